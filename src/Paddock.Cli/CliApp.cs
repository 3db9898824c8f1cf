using System.CommandLine;
using Paddock.Cli.Copy;
using Paddock.Cli.Daemon;
using Paddock.Cli.Exec;
using Paddock.Cli.Mcp;
using Paddock.Cli.Sandboxes;
using Paddock.Cli.Shell;
using Paddock.Cli.Teams;
using Paddock.Cli.Templates;

namespace Paddock.Cli;

/// <summary>The command tree of `paddock`, and the one place errors become messages and exit codes.</summary>
internal static class CliApp
{
    public static readonly Option<bool> Json = new("--json") { Description = "Print JSON for scripts instead of a table", Recursive = true };

    public static async Task<int> RunAsync(string[] args)
    {
        var root = new RootCommand("paddock: run code in Paddock sandboxes (and start the daemon with 'paddock up').");
        root.Options.Add(Json);
        root.Subcommands.Add(UpCommand.Build());
        root.Subcommands.Add(SandboxCommands.Build());
        root.Subcommands.Add(ExecCommand.Build());
        root.Subcommands.Add(Code.RunCodeCommand.Build());
        root.Subcommands.Add(ShellCommand.Build());
        root.Subcommands.Add(CopyCommand.Build());
        root.Subcommands.Add(TemplateCommands.Build());
        root.Subcommands.Add(LogsCommand.Build());
        root.Subcommands.Add(Audit.AuditCommand.Build());
        root.Subcommands.Add(KeyCommands.Build());
        root.Subcommands.Add(TeamCommands.Build());
        root.Subcommands.Add(Volumes.VolumeCommands.Build());
        root.Subcommands.Add(McpCommand.Build());
        ImageImport.ImportCommand.AddTo(root);
        var parsed = root.Parse(args);
        return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
    }

    /// <summary>Wraps a command's body: settings from the environment, and every failure as a message and exit code.</summary>
    public static Func<ParseResult, CancellationToken, Task<int>> Action(Func<ParseResult, CliSettings, CancellationToken, Task<int>> body) =>
        async (parseResult, cancellationToken) =>
        {
            CliSettings? settings = null;
            try
            {
                settings = CliSettings.FromEnvironment();
                return await body(parseResult, settings, cancellationToken);
            }
            catch (Exception ex)
            {
                var (code, message) = settings is null && ex is CliException c ? (c.ExitCode, c.Message) : Errors.Describe(ex, settings ?? Fallback());
                await Console.Error.WriteLineAsync($"paddock: {message}");
                return code;
            }
        };

    private static CliSettings Fallback() => new()
    {
        Connection = new Paddock.Client.ConnectionOptions(),
        KeySource = "unknown",
        ApiUrl = new Uri(Paddock.Client.ConnectionOptions.DefaultUrl),
    };

    /// <summary>Parses repeated KEY=VALUE options.</summary>
    public static Dictionary<string, string>? Pairs(string[]? items, string option)
    {
        if (items is not { Length: > 0 })
        {
            return null;
        }
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in items)
        {
            var eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new CliException(ExitCodes.Usage, $"{option} takes KEY=VALUE, not '{item}'");
            }
            pairs[item[..eq]] = item[(eq + 1)..];
        }
        return pairs;
    }
}
