using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Daemon.Runtimes;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>What a command run through the agent printed, and how it ended.</summary>
internal sealed record CommandOutput(int ExitCode, bool Exited, string Status, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode} ({Status})\nstdout: {Stdout}\nstderr: {Stderr}";
}

/// <summary>
/// A minimal client of the agent's process.Process/Start (Connect, JSON codec, server stream) over
/// <see cref="ISandboxRuntime.ConnectAsync"/>: the same path the daemon's proxy takes, with no host address involved.
/// </summary>
internal static class AgentCalls
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    public static HttpClient Client(ISandboxRuntime runtime, string sandboxId, TimeSpan timeout)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) => await runtime.ConnectAsync(sandboxId, AgentBundle.AgentPort, ct),
            PooledConnectionLifetime = TimeSpan.Zero,
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://sandbox:49983"), Timeout = timeout };
    }

    /// <summary>Runs <paramref name="cmd"/> to its end and collects its output.</summary>
    public static async Task<CommandOutput> RunAsync(ISandboxRuntime runtime, string sandboxId, string cmd, IEnumerable<string> args, string? user, TimeSpan timeout, string? cwd = null, string? accessToken = null)
    {
        using var http = Client(runtime, sandboxId, timeout);
        using var cts = new CancellationTokenSource(timeout);
        using var response = await SendStartAsync(http, cmd, args, user, cts.Token, cwd, accessToken);
        await using var body = await response.Content.ReadAsStreamAsync(cts.Token);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        await foreach (var e in Events(body, cts.Token))
        {
            switch (e.EventCase)
            {
                case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout:
                    stdout.Append(e.Data.Stdout.ToStringUtf8());
                    break;
                case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr:
                    stderr.Append(e.Data.Stderr.ToStringUtf8());
                    break;
                case ProcessEvent.EventOneofCase.End:
                    return new CommandOutput(e.End.ExitCode, e.End.Exited, e.End.Status, stdout.ToString(), stderr.ToString());
            }
        }
        throw new IOException($"the stream ended without an end event; stdout: {stdout} stderr: {stderr}");
    }

    /// <summary>
    /// Starts <paramref name="cmd"/> and returns its pid inside the sandbox once it runs, leaving it running; the
    /// returned response keeps the stream open (dispose it, or destroy the sandbox, to end it).
    /// </summary>
    public static async Task<(uint Pid, IDisposable Stream)> StartAsync(ISandboxRuntime runtime, string sandboxId, string cmd, IEnumerable<string> args, string? user, TimeSpan timeout)
    {
        var http = Client(runtime, sandboxId, Timeout.InfiniteTimeSpan);
        using var cts = new CancellationTokenSource(timeout);
        var response = await SendStartAsync(http, cmd, args, user, cts.Token);
        var body = await response.Content.ReadAsStreamAsync(cts.Token);
        await foreach (var e in Events(body, cts.Token))
        {
            if (e.EventCase == ProcessEvent.EventOneofCase.Start)
            {
                return (e.Start.Pid, new Disposables(body, response, http));
            }
        }
        throw new IOException("the stream ended before a start event");
    }

    private static async Task<HttpResponseMessage> SendStartAsync(HttpClient http, string cmd, IEnumerable<string> args, string? user, CancellationToken cancellationToken, string? cwd = null, string? accessToken = null)
    {
        var request = new StartRequest { Process = new ProcessConfig { Cmd = cmd, Args = { args } } };
        if (cwd is not null)
        {
            request.Process.Cwd = cwd;
        }
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(request));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        var message = new HttpRequestMessage(HttpMethod.Post, "/process.Process/Start") { Content = new ByteArrayContent(framed) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        message.Headers.Add("Connect-Protocol-Version", "1");
        if (accessToken is not null)
        {
            message.Headers.Add("X-Access-Token", accessToken);
        }
        if (user is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        }
        var response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            var text = await response.Content.ReadAsStringAsync(cancellationToken);
            response.Dispose();
            throw new IOException($"process.Process/Start answered {(int)response.StatusCode}: {text}");
        }
        return response;
    }

    private static async IAsyncEnumerable<ProcessEvent> Events(Stream body, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var header = new byte[Envelope.HeaderSize];
        while (true)
        {
            try
            {
                await body.ReadExactlyAsync(header, cancellationToken);
            }
            catch (EndOfStreamException)
            {
                yield break;
            }
            var (flags, length) = Envelope.ReadHeader(header);
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, cancellationToken);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                if (text.Contains("\"error\"", StringComparison.Ordinal))
                {
                    throw new IOException("the agent ended the stream with an error: " + text);
                }
                yield break;
            }
            var response = Parser.Parse<StartResponse>(text);
            if (response.Event is not null)
            {
                yield return response.Event;
            }
        }
    }

    private sealed class Disposables(params IDisposable[] items) : IDisposable
    {
        public void Dispose()
        {
            foreach (var item in items)
            {
                item.Dispose();
            }
        }
    }
}
