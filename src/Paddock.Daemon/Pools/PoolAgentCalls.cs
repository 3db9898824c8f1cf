using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Daemon.Proxy;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Pools;

/// <summary>
/// The pool's own calls to a member's agent, sent through the proxy's client (<see cref="SandboxHttpClient"/>) so that
/// the connection they open stays in the proxy's pool: the claimer's first command then finds a connection to its
/// agent already open (no socket made in the sandbox's namespace, no TCP handshake, no new HTTP connection).
/// </summary>
internal static class PoolAgentCalls
{
    private const int AgentPort = Runtimes.AgentBundle.AgentPort;
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    /// <summary>
    /// Warms a fresh member with the daemon's own traffic before it counts as ready, so that the first call of its
    /// claimer does not pay the agent's first-request costs (its HTTP and Connect paths, a spawn under each user's
    /// credentials, the pages of /bin/true): a POST /init that changes nothing (no variables, the pool's token kept),
    /// and /bin/true as the template's default user and as root. Nothing of it is a user's: every member gets the same.
    /// </summary>
    public static async Task WarmAsync(HttpMessageInvoker client, string sandboxId, string poolToken, string? defaultUser, CancellationToken cancellationToken)
    {
        await InitAsync(client, sandboxId, poolToken, new Dictionary<string, string>(), poolToken, cancellationToken);
        if (defaultUser is not null && !string.Equals(defaultUser, "root", StringComparison.Ordinal))
        {
            await RunTrueAsync(client, sandboxId, poolToken, defaultUser, cancellationToken);
        }
        await RunTrueAsync(client, sandboxId, poolToken, "root", cancellationToken);
    }

    /// <summary>envd's POST /init over a kept-alive connection; throws <see cref="IOException"/> when the agent refuses it.</summary>
    public static async Task InitAsync(HttpMessageInvoker client, string sandboxId, string? currentToken,
        IReadOnlyDictionary<string, string> envVars, string? newToken, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, Uri(sandboxId, "init"))
        {
            Content = new ByteArrayContent(AgentInit.Body(envVars, newToken)),
            Version = HttpVersion.Version11,
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        Templates.BuildCommand.Authenticate(request, currentToken, user: null);
        using var response = await client.SendAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.NoContent)
        {
            var detail = await response.Content.ReadAsStringAsync(cancellationToken);
            throw new IOException($"the agent refused POST /init: {(int)response.StatusCode} {detail}".TrimEnd());
        }
    }

    /// <summary>process.Process/Start of /bin/true as <paramref name="user"/>; returns when it ended with 0.</summary>
    private static async Task RunTrueAsync(HttpMessageInvoker client, string sandboxId, string token, string user, CancellationToken cancellationToken)
    {
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(new StartRequest { Process = new ProcessConfig { Cmd = "/bin/true" } }));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        using var request = new HttpRequestMessage(HttpMethod.Post, Uri(sandboxId, "process.Process/Start"))
        {
            Content = new ByteArrayContent(framed),
            Version = HttpVersion.Version11,
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        request.Headers.Add("Connect-Protocol-Version", "1");
        Templates.BuildCommand.Authenticate(request, token, user);
        using var response = await client.SendAsync(request, cancellationToken);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new IOException($"the agent refused /bin/true as {user}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var header = new byte[Envelope.HeaderSize];
        // Bounded: the stream of /bin/true is a start event, an end event and the end of the stream.
        for (var frames = 0; frames < 100; frames++)
        {
            await body.ReadExactlyAsync(header, cancellationToken);
            var (flags, length) = Envelope.ReadHeader(header);
            if (length > 1 << 20)
            {
                throw new IOException($"the agent sent a message of {length} bytes to /bin/true's Start");
            }
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, cancellationToken);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new IOException($"the Start stream of /bin/true as {user} ended before the process did: {text}");
            }
            if (Parser.Parse<StartResponse>(text).Event is { EventCase: ProcessEvent.EventOneofCase.End } e)
            {
                if (e.End.Exited && e.End.ExitCode == 0)
                {
                    // Read the stream's end too, so that the connection goes back to the pool rather than being dropped.
                    await DrainAsync(body, cancellationToken);
                    return;
                }
                throw new IOException($"/bin/true as {user} ended with exit code {e.End.ExitCode} {e.End.Error}".TrimEnd());
            }
        }
        throw new IOException($"the Start stream of /bin/true as {user} sent 100 messages without its end");
    }

    private static async Task DrainAsync(Stream body, CancellationToken cancellationToken)
    {
        var buffer = new byte[1024];
        // Bounded: what follows the end event is the end-of-stream message, a few bytes.
        for (var i = 0; i < 64 && await body.ReadAsync(buffer, cancellationToken) > 0; i++)
        {
        }
    }

    private static Uri Uri(string sandboxId, string path) =>
        new(SandboxHttpClient.DestinationPrefix(new SandboxTarget(sandboxId, AgentPort)) + path);
}
