using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.DependencyInjection;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Paddock.Mcp;

/// <summary>What both MCP servers (stdio in the CLI, Streamable HTTP in paddockd) register: one name, one tool set.</summary>
internal static class PaddockMcpServer
{
    public const string Name = "paddock";

    /// <summary>Told to the client at initialize: how the tools fit together.</summary>
    public const string Instructions =
        "Paddock runs code in isolated Linux sandboxes. Call create_sandbox once and keep its id: the sandbox keeps its files and " +
        "processes between calls until kill_sandbox or its timeout (default 300 s; set_sandbox_timeout changes it). " +
        "run_command runs bash (python3, node, git, curl; 'sudo' works for the default user); write_file/read_file/list_files move text; " +
        "get_port_url gives the URL of a server started in the sandbox. Kill sandboxes you no longer need.";

    /// <summary>
    /// The SDK's options, but with null members written: a tool's output schema lists every member of its record as
    /// required (nullable ones as "type": [..., "null"]), and the TypeScript client checks structured content against
    /// it, so an omitted null fails the call ("must have required property 'alias'", measured with 1.32.2).
    /// </summary>
    private static readonly JsonSerializerOptions SerializerOptions = new(McpJsonUtilities.DefaultOptions)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Adds the MCP server with Paddock's tools; <typeparamref name="TSource"/> says where calls go (see <see cref="IConnectionSource"/>).</summary>
    public static IMcpServerBuilder AddPaddockMcp<TSource>(this IServiceCollection services, Func<IServiceProvider, TSource> source)
        where TSource : class, IConnectionSource
    {
        services.AddSingleton<IConnectionSource>(source);
        return services
            .AddMcpServer(options =>
            {
                options.ServerInfo = new Implementation { Name = Name, Version = typeof(PaddockMcpServer).Assembly.GetName().Version?.ToString(3) ?? "0.1.0" };
                options.ServerInstructions = Instructions;
            })
            .WithTools<SandboxTools>(SerializerOptions);
    }
}
