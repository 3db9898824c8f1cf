using Paddock.Client;

namespace Paddock.Cli;

/// <summary>
/// Where the daemon is and which key to use: <c>PADDOCK_URL</c> (default http://127.0.0.1:3000) and
/// <c>PADDOCK_API_KEY</c>, else the key paddockd wrote to <c>{state}/api-key</c> on its first start
/// (state: <c>PADDOCK_STATE_DIR</c>, default /var/lib/paddock). E2B's variables work too, as in the SDK,
/// when the Paddock ones are unset.
/// </summary>
internal sealed record CliSettings
{
    public const string DefaultStateDir = "/var/lib/paddock";

    public required ConnectionOptions Connection { get; init; }

    /// <summary>Where the key came from, for messages about a refused key.</summary>
    public required string KeySource { get; init; }

    /// <summary>The address the CLI talks to, for messages about an unreachable daemon.</summary>
    public required Uri ApiUrl { get; init; }

    public static CliSettings FromEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        string? Env(string name) => environment(name) is { Length: > 0 } v ? v.Trim() : null;

        Uri? url = null;
        if (Env("PADDOCK_URL") is { } text)
        {
            if (!Uri.TryCreate(text, UriKind.Absolute, out url) || (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps))
            {
                throw new CliException(ExitCodes.Usage, $"PADDOCK_URL is not an http(s) URL: '{text}'");
            }
        }

        string? key;
        string source;
        if (Env("PADDOCK_API_KEY") is { } envKey)
        {
            (key, source) = (envKey, "PADDOCK_API_KEY");
        }
        else if (Env("E2B_API_KEY") is { } e2bKey)
        {
            (key, source) = (e2bKey, "E2B_API_KEY");
        }
        else
        {
            var file = Path.Combine(Env("PADDOCK_STATE_DIR") ?? DefaultStateDir, "api-key");
            key = ReadKeyFile(file);
            source = key is null ? $"no key: PADDOCK_API_KEY is unset and {file} is not readable" : file;
        }

        var connection = new ConnectionOptions
        {
            ApiKey = key,
            ApiUrl = url,
            SandboxUrl = url,
            // A sandbox command may run long; the request timeout bounds only each request and stream start.
            RequestTimeout = TimeSpan.FromSeconds(60),
        };
        var resolved = connection.Resolve(environment);
        return new CliSettings { Connection = connection with { ApiUrl = resolved.ApiUrl, SandboxUrl = resolved.SandboxUrl, Domain = resolved.Domain, Debug = resolved.Debug }, KeySource = source, ApiUrl = resolved.ApiUrl };
    }

    private static string? ReadKeyFile(string path)
    {
        try
        {
            var text = File.ReadAllText(path).Trim();
            return text.Length > 0 ? text : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null; // reported through KeySource when the daemon refuses the call
        }
    }
}
