using System.CommandLine;
using Paddock.Cli.Native;

namespace Paddock.Cli.Daemon;

/// <summary>
/// `paddock up [DAEMON OPTIONS]`: replaces this process with paddockd in the foreground, with its built-in defaults
/// unless options are passed on. The daemon is PADDOCK_DAEMON, else paddockd next to this program, else the
/// build output of src/Paddock.Daemon beside src/Paddock.Cli in a source checkout.
/// </summary>
internal static class UpCommand
{
    public static Command Build()
    {
        var command = new Command("up", "Start the Paddock daemon (paddockd) in the foreground; options after 'up' are passed to it")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction(parse =>
        {
            try
            {
                var (file, argv) = Locate(parse.UnmatchedTokens);
                Console.Out.Flush();
                var errno = Native.Exec.Replace(file, argv);
                Console.Error.WriteLine($"paddock: cannot start {file}: {new System.ComponentModel.Win32Exception(errno).Message}");
                return ExitCodes.Unavailable;
            }
            catch (CliException ex)
            {
                Console.Error.WriteLine($"paddock: {ex.Message}");
                return ex.ExitCode;
            }
        });
        return command;
    }

    /// <summary>The program and argv that start the daemon.</summary>
    internal static (string File, string[] Argv) Locate(IReadOnlyList<string> daemonArgs, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var candidates = new List<string>();
        if (environment("PADDOCK_DAEMON") is { Length: > 0 } configured)
        {
            candidates.Add(configured);
            if (!File.Exists(configured))
            {
                throw new CliException(ExitCodes.Unavailable, $"PADDOCK_DAEMON names {configured}, which does not exist");
            }
        }
        else
        {
            var here = AppContext.BaseDirectory;
            candidates.Add(Path.Combine(here, "paddockd"));
            candidates.Add(Path.Combine(here, "paddockd.dll"));
            // src/Paddock.Cli/bin/CONFIG/net10.0/ -> src/Paddock.Daemon/bin/CONFIG/net10.0/
            var tfm = new DirectoryInfo(here.TrimEnd(Path.DirectorySeparatorChar));
            if (tfm.Parent is { } config && config.Parent?.Parent?.Parent is { } src)
            {
                var built = Path.Combine(src.FullName, "Paddock.Daemon", "bin", config.Name, tfm.Name);
                candidates.Add(Path.Combine(built, "paddockd"));
                candidates.Add(Path.Combine(built, "paddockd.dll"));
            }
        }
        foreach (var candidate in candidates.Where(File.Exists))
        {
            if (candidate.EndsWith(".dll", StringComparison.Ordinal))
            {
                var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
                return (dotnet, ["dotnet", candidate, .. daemonArgs]);
            }
            return (candidate, [candidate, .. daemonArgs]);
        }
        throw new CliException(ExitCodes.Unavailable, $"cannot find paddockd; looked at {string.Join(", ", candidates)}. Build it (scripts/setup) or set PADDOCK_DAEMON to its path.");
    }
}
