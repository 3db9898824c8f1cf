// The agent assembly is Linux-only (SupportedOSPlatform("linux") in its csproj); tests that call its internals must
// say so too or the platform analyzer (CA1416) fails the build. The attribute allows repeats, so a project-wide one
// added to the csproj later does not clash with this.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
