// The interpreter assembly is Linux-only (SupportedOSPlatform("linux") in its csproj); tests that call its internals
// must be too, or CA1416 flags every call.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
