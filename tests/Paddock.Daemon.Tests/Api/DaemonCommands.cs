using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// Runs a command in a sandbox the way the SDK does, through the daemon's listener: process.Process/Start (Connect,
/// JSON codec, server stream) routed by the E2b-Sandbox-* headers, with the agent's access token.
/// </summary>
internal static class DaemonCommands
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    public static Task<(int ExitCode, string Stdout)> RunAsync(TestDaemon daemon, string sandboxId, string? token, string script, string? user = null) =>
        RunAsync(daemon.Raw, sandboxId, token, script, user);

    /// <summary>The same through any client of a daemon's listener (a cluster node's, for one).</summary>
    public static async Task<(int ExitCode, string Stdout)> RunAsync(HttpClient raw, string sandboxId, string? token, string script, string? user = null)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", script } } };
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(request));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);
        using var message = new HttpRequestMessage(HttpMethod.Post, "/process.Process/Start") { Content = new ByteArrayContent(framed) };
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        message.Headers.Add("Connect-Protocol-Version", "1");
        message.Headers.Add("E2b-Sandbox-Id", sandboxId);
        message.Headers.Add("E2b-Sandbox-Port", "49983");
        if (token is not null)
        {
            message.Headers.Add("X-Access-Token", token);
        }
        if (user is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        }
        using var response = await raw.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"process.Process/Start answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(timeout.Token)}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        var stdout = new StringBuilder();
        var header = new byte[Envelope.HeaderSize];
        while (true)
        {
            await body.ReadExactlyAsync(header, timeout.Token);
            var (flags, length) = Envelope.ReadHeader(header);
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, timeout.Token);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new IOException("the stream ended before the process did: " + text);
            }
            var e = Parser.Parse<StartResponse>(text).Event;
            if (e?.EventCase == ProcessEvent.EventOneofCase.Data && e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout)
            {
                stdout.Append(e.Data.Stdout.ToStringUtf8());
            }
            if (e?.EventCase == ProcessEvent.EventOneofCase.End)
            {
                return (e.End.ExitCode, stdout.ToString());
            }
        }
    }
}
