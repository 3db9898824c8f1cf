namespace Paddock.Client.Tests;

/// <summary>Finds the repository's build outputs from the test assembly's folder.</summary>
internal static class Repo
{
    public static string Root { get; } = FindRoot();

    /// <summary>Release or Debug: whichever configuration this test assembly was built in.</summary>
    public static string Configuration { get; } =
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    /// <summary>The command line that starts a program: a native binary, or <c>dotnet x.dll</c>.</summary>
    public static (string File, string[] Args) Program(string envVariable, string project, string assembly, string? rid)
    {
        if (Environment.GetEnvironmentVariable(envVariable) is { Length: > 0 } binary)
        {
            return binary.EndsWith(".dll", StringComparison.Ordinal) ? ("dotnet", [binary]) : (binary, []);
        }
        var folder = Path.Combine(Root, "src", project, "bin", Configuration, "net10.0");
        if (rid is not null)
        {
            folder = Path.Combine(folder, rid);
        }
        var dll = Path.Combine(folder, assembly + ".dll");
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} does not exist: build {project} ({Configuration}) first, or set {envVariable}");
        }
        return ("dotnet", [dll]);
    }

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        for (var i = 0; i < 12 && dir is not null; i++, dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Paddock.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Paddock.slnx above {AppContext.BaseDirectory}");
    }
}
