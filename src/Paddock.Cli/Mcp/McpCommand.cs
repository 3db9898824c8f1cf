using System.CommandLine;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Paddock.Mcp;

namespace Paddock.Cli.Mcp;

/// <summary>
/// <c>paddock mcp</c>: an MCP server on stdin/stdout for a local agent (Claude Desktop, Cursor, Codex: one line of
/// configuration, <c>{"command": "paddock", "args": ["mcp"]}</c>). The tools call the daemon with the CLI's settings
/// (PADDOCK_URL, PADDOCK_API_KEY or the key file), as every other command does. Logs go to stderr: stdout carries
/// only the protocol.
/// </summary>
internal static class McpCommand
{
    public static Command Build()
    {
        var command = new Command("mcp", "Serve Paddock's sandboxes to an agent over the Model Context Protocol (stdio)");
        command.SetAction(CliApp.Action(async (_, settings, cancellationToken) =>
        {
            var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
            builder.Services.AddPaddockMcp(_ => new FixedConnectionSource(settings.Connection)).WithStdioServerTransport();
            using var host = builder.Build();
            await host.RunAsync(cancellationToken);
            return 0;
        }));
        return command;
    }
}
