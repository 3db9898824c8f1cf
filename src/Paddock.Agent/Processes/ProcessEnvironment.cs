using System.Collections.Concurrent;
using Paddock.Agent.Users;

namespace Paddock.Agent.Processes;

/// <summary>
/// The environment a started process gets. Nothing is inherited from the agent wholesale: its own variables
/// (PADDOCK_AGENT_ACCESS_TOKEN among them) must not leak into user commands. The base is what a login gives
/// (PATH, HOME, USER, LOGNAME, SHELL, and TERM on a terminal), then the sandbox-wide variables, then the request's,
/// later entries overriding earlier ones, as E2B's envd orders them.
/// </summary>
internal sealed class ProcessEnvironment
{
    /// <summary>Debian's default PATH for root (/etc/login.defs ENV_SUPATH), used when the agent has none.</summary>
    public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>What E2B's SDKs ask for on a terminal, and what bash's readline handles well.</summary>
    public const string DefaultTerm = "xterm-256color";

    private readonly string _path;

    public ProcessEnvironment(string? agentPath)
    {
        _path = string.IsNullOrEmpty(agentPath) ? DefaultPath : agentPath;
    }

    /// <summary>Variables every process of the sandbox starts with (E2B's sandbox-level <c>envs</c>).</summary>
    public ConcurrentDictionary<string, string> SandboxVariables { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// Loads the sandbox-wide variables the host hands over in one variable holding a JSON object of strings
    /// (<c>PADDOCK_AGENT_SANDBOX_ENV</c>: the daemon keeps them out of the agent's own environment, where
    /// LD_PRELOAD or DOTNET_* would reach the agent itself). Throws <see cref="ArgumentException"/> on malformed input.
    /// </summary>
    public void LoadSandboxVariables(string? json)
    {
        if (string.IsNullOrEmpty(json))
        {
            return;
        }
        try
        {
            using var document = System.Text.Json.JsonDocument.Parse(json);
            if (document.RootElement.ValueKind != System.Text.Json.JsonValueKind.Object)
            {
                throw new ArgumentException("PADDOCK_AGENT_SANDBOX_ENV must hold a JSON object of strings");
            }
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Value.ValueKind != System.Text.Json.JsonValueKind.String || property.Name.Length == 0 || property.Name.Contains('=', StringComparison.Ordinal))
                {
                    throw new ArgumentException($"PADDOCK_AGENT_SANDBOX_ENV: variable '{property.Name}' must be a non-empty name without '=' with a string value");
                }
                SandboxVariables[property.Name] = property.Value.GetString()!;
            }
        }
        catch (System.Text.Json.JsonException ex)
        {
            throw new ArgumentException($"PADDOCK_AGENT_SANDBOX_ENV is not valid JSON: {ex.Message}");
        }
    }

    /// <summary>The environment for <paramref name="user"/>; order is kept for a stable environ(7).</summary>
    public List<KeyValuePair<string, string>> Build(AgentUser user, bool terminal, IReadOnlyDictionary<string, string> requested)
    {
        var env = new List<KeyValuePair<string, string>>();
        void Set(string key, string value)
        {
            var i = env.FindIndex(kv => string.Equals(kv.Key, key, StringComparison.Ordinal));
            if (i >= 0)
            {
                env[i] = new(key, value);
            }
            else
            {
                env.Add(new(key, value));
            }
        }

        Set("PATH", _path);
        Set("HOME", user.Home);
        Set("USER", user.Name);
        Set("LOGNAME", user.Name);
        Set("SHELL", user.Shell);
        if (terminal)
        {
            Set("TERM", DefaultTerm);
        }
        foreach (var (key, value) in SandboxVariables)
        {
            Set(key, value);
        }
        foreach (var (key, value) in requested)
        {
            Set(key, value);
        }
        return env;
    }

    /// <summary>
    /// The file to exec for <paramref name="command"/>: as given when it contains a slash (relative to the working
    /// directory, as execve resolves it after the chdir), else the first executable match in the process's own
    /// PATH (not the agent's: a request may set PATH). Null when nothing matches.
    /// </summary>
    public static string? ResolveExecutable(string command, string? path, string workingDirectory)
    {
        if (command.Contains('/', StringComparison.Ordinal))
        {
            return command;
        }
        foreach (var dir in (string.IsNullOrEmpty(path) ? DefaultPath : path).Split(':'))
        {
            // An empty PATH entry means the working directory (execvp(3)).
            var candidate = Path.Combine(dir.Length == 0 ? workingDirectory : Path.Combine(workingDirectory, dir), command);
            if (IsExecutableFile(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    private static bool IsExecutableFile(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                return false;
            }
            const UnixFileMode anyExecute = UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute;
            return (info.UnixFileMode & anyExecute) != 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }
}
