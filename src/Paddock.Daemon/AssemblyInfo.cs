// paddockd manages Linux namespaces, cgroups and file modes: it runs on Linux only.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
