using System.Globalization;
using System.Text.Json.Nodes;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>The agent's command line and environment as the init process of a sandbox, in every OCI tier.</summary>
internal static class AgentLaunch
{
    public const string DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

    /// <summary>The agent's variable that carries <see cref="SandboxSpec.EnvVars"/> as a JSON object.</summary>
    public const string SandboxEnvVariable = "PADDOCK_AGENT_SANDBOX_ENV";

    public static List<string> Arguments(SandboxSpec spec, AgentBundle bundle)
    {
        var args = new List<string>(bundle.LaunchPrefix) { "--port", AgentBundle.AgentPort.ToString(CultureInfo.InvariantCulture) };
        if (spec.AgentAccessToken is { Length: > 0 } token)
        {
            // On the command line, as the agent's options define it. Processes in the sandbox can read
            // /proc/1/cmdline; they are the sandbox's own, which the token does not guard against (it guards the
            // agent from callers outside).
            args.AddRange(["--access-token", token]);
        }
        if (spec.DefaultUser is { Length: > 0 } user)
        {
            args.AddRange(["--default-user", user]);
        }
        if (spec.DefaultWorkdir is { Length: > 0 } workdir)
        {
            args.AddRange(["--default-workdir", workdir]);
        }
        return args;
    }

    public static Dictionary<string, string> Environment(SandboxSpec spec)
    {
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["PATH"] = DefaultPath,
        };
        if (SandboxEnvValue(spec.EnvVars) is { } value)
        {
            env[SandboxEnvVariable] = value;
        }
        return env;
    }

    /// <summary>
    /// The value of <see cref="SandboxEnvVariable"/>, null without variables. The sandbox's variables are for the
    /// commands the agent starts, not for the agent: as plain variables they would reach its loader and runtime
    /// (LD_PRELOAD, DOTNET_*), and the agent builds each command's environment itself. So they travel as one JSON
    /// object for the agent to hand on.
    /// </summary>
    private static string? SandboxEnvValue(IReadOnlyDictionary<string, string> envVars)
    {
        if (envVars.Count == 0)
        {
            return null;
        }
        var vars = new JsonObject();
        foreach (var (k, v) in envVars)
        {
            vars[k] = v;
        }
        return vars.ToJsonString();
    }
    /// <summary>
    /// <see cref="RewriteIdentity"/> of a sandbox's bundle under its lock: what both tiers' KeepIdentityAsync do.
    /// Throws <see cref="SandboxNotFoundException"/> when the id is not a sandbox's or it has no bundle.
    /// </summary>
    public static async Task KeepIdentityAsync(
        ISandboxDirectories directories, KeyedLock locks, string sandboxId, IReadOnlyDictionary<string, string> envVars, string? accessToken, CancellationToken cancellationToken)
    {
        if (!SandboxLayout.IsValidId(sandboxId))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var layout = new SandboxLayout(directories, sandboxId);
        using var held = await locks.AcquireAsync(sandboxId, cancellationToken);
        if (!File.Exists(layout.ConfigFile))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        RewriteIdentity(layout.ConfigFile, envVars, accessToken);
    }

    /// <summary>
    /// Rewrites the agent's access token and the sandbox's variables in the config.json of an existing bundle
    /// (atomically: a new file renamed over the old), so that a later fresh boot of that bundle starts the agent as
    /// the hand-over of a pooled sandbox left it. The hand-over's POST /init changes only the running agent; without
    /// this a filesystem-only resume booted the pool's token and no variables (issue 15, reproduced by
    /// RuncPauseTests). Everything else in the file stays as the tier wrote it.
    /// </summary>
    public static void RewriteIdentity(string configFile, IReadOnlyDictionary<string, string> envVars, string? accessToken)
    {
        var config = JsonNode.Parse(File.ReadAllText(configFile))?.AsObject()
            ?? throw new InvalidDataException($"{configFile} is not a JSON object");
        var process = config["process"]?.AsObject() ?? throw new InvalidDataException($"{configFile} has no process");
        var args = process["args"]?.AsArray() ?? throw new InvalidDataException($"{configFile} has no process.args");
        var kept = new JsonArray();
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i]?.GetValue<string>();
            if (arg == "--access-token")
            {
                i++; // and its value
                continue;
            }
            kept.Add(arg);
        }
        if (accessToken is { Length: > 0 })
        {
            kept.Add("--access-token");
            kept.Add(accessToken);
        }
        process["args"] = kept;
        var env = new JsonArray();
        foreach (var entry in process["env"]?.AsArray() ?? [])
        {
            var text = entry?.GetValue<string>();
            if (text is not null && !text.StartsWith(SandboxEnvVariable + "=", StringComparison.Ordinal))
            {
                env.Add(text);
            }
        }
        if (SandboxEnvValue(envVars) is { } value)
        {
            env.Add($"{SandboxEnvVariable}={value}");
        }
        process["env"] = env;
        var temporary = configFile + ".new";
        File.WriteAllText(temporary, config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        File.Move(temporary, configFile, overwrite: true);
    }
}
