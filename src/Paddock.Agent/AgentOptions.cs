using System.Globalization;

namespace Paddock.Agent;

/// <summary>
/// The agent's settings, from its command line, else from <c>PADDOCK_AGENT_*</c> environment variables, else the
/// defaults of E2B's envd (port 49983 on every address).
/// </summary>
internal sealed record AgentOptions
{
    public const int DefaultPort = 49983;

    /// <summary>The version reported to clients; E2B's SDKs gate features on it (envd 0.6.4 is the feature set served).</summary>
    public const string Version = "0.6.4";

    public string ListenAddress { get; init; } = "0.0.0.0";

    public int Port { get; init; } = DefaultPort;

    /// <summary>When set, every call but <c>/health</c> must carry it in <c>X-Access-Token</c> or a signed URL.</summary>
    public string? AccessToken { get; init; }

    /// <summary>The account a call that names none acts as; null: the agent's own account.</summary>
    public string? DefaultUser { get; init; }

    /// <summary>The working directory of a process that names none; null: the user's home.</summary>
    public string? DefaultWorkdir { get; init; }

    public int MaxMessageBytes { get; init; } = 32 * 1024 * 1024;

    public static string Usage => """
        usage: paddock-agent [options]
          --listen ADDRESS        address to listen on (default 0.0.0.0; env PADDOCK_AGENT_LISTEN)
          --port N                port to listen on (default 49983; env PADDOCK_AGENT_PORT)
          --access-token TOKEN    require X-Access-Token or a signed URL (env PADDOCK_AGENT_ACCESS_TOKEN)
          --default-user NAME     account for calls that name none (env PADDOCK_AGENT_DEFAULT_USER)
          --default-workdir DIR   working directory for processes that name none (env PADDOCK_AGENT_DEFAULT_WORKDIR)
          --max-message-bytes N   largest Connect message accepted (default 33554432)
        """;

    /// <summary>Parses the command line; throws <see cref="ArgumentException"/> with a message for the user.</summary>
    public static AgentOptions Parse(IReadOnlyList<string> args)
    {
        var options = new AgentOptions
        {
            ListenAddress = Env("LISTEN") ?? "0.0.0.0",
            Port = Env("PORT") is { } p ? ParsePort(p) : DefaultPort,
            AccessToken = Env("ACCESS_TOKEN"),
            DefaultUser = Env("DEFAULT_USER"),
            DefaultWorkdir = Env("DEFAULT_WORKDIR"),
        };
        for (var i = 0; i < args.Count; i++)
        {
            string Value()
            {
                if (i + 1 >= args.Count)
                {
                    throw new ArgumentException($"option {args[i]} needs a value");
                }
                return args[++i];
            }

            options = args[i] switch
            {
                "--listen" => options with { ListenAddress = Value() },
                "--port" => options with { Port = ParsePort(Value()) },
                "--access-token" => options with { AccessToken = Value() },
                "--default-user" => options with { DefaultUser = Value() },
                "--default-workdir" => options with { DefaultWorkdir = Value() },
                "--max-message-bytes" => options with { MaxMessageBytes = ParsePositive(args[i - 0], Value()) },
                _ => throw new ArgumentException($"unknown option '{args[i]}'"),
            };
        }
        if (options.AccessToken is { Length: 0 })
        {
            options = options with { AccessToken = null };
        }
        return options;
    }

    private static string? Env(string name) => Environment.GetEnvironmentVariable("PADDOCK_AGENT_" + name) is { Length: > 0 } v ? v : null;

    private static int ParsePort(string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 0 and <= 65535
            ? port
            : throw new ArgumentException($"invalid port '{text}': expected 0-65535");

    private static int ParsePositive(string option, string text) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0
            ? n
            : throw new ArgumentException($"invalid value '{text}' for {option}: expected a positive integer");
}
