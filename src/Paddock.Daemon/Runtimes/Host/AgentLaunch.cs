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
        if (spec.EnvVars.Count > 0)
        {
            // The sandbox's variables are for the commands the agent starts, not for the agent: as plain variables
            // they would reach its loader and runtime (LD_PRELOAD, DOTNET_*), and the agent builds each command's
            // environment itself. So they travel as one JSON object for the agent to hand on.
            var vars = new JsonObject();
            foreach (var (k, v) in spec.EnvVars)
            {
                vars[k] = v;
            }
            env[SandboxEnvVariable] = vars.ToJsonString();
        }
        return env;
    }
}
