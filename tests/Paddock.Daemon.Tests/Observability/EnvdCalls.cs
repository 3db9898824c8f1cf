using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Daemon.Tests.Api;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Tests.Observability;

/// <summary>envd calls through the daemon's proxy, as the SDKs make them (Connect JSON or proto; plain HTTP /files).</summary>
internal static class EnvdCalls
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private static HttpRequestMessage Request(HttpMethod method, string path, string sandboxId, string? token, string? user)
    {
        var message = new HttpRequestMessage(method, path);
        message.Headers.Add("E2b-Sandbox-Id", sandboxId);
        message.Headers.Add("E2b-Sandbox-Port", "49983");
        message.Headers.Add("Connect-Protocol-Version", "1");
        if (token is not null)
        {
            message.Headers.Add("X-Access-Token", token);
        }
        if (user is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        }
        return message;
    }

    /// <summary>process.Process/Start with <paramref name="request"/>; reads the stream to its end event and returns the exit code.</summary>
    public static async Task<int> StartAsync(TestDaemon daemon, string sandboxId, string? token, StartRequest request, bool proto = false, string? user = null, string path = "/process.Process/Start")
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var payload = proto ? request.ToByteArray() : Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(request));
        var framed = new byte[Envelope.HeaderSize + payload.Length];
        Envelope.WriteHeader(framed, 0, payload.Length);
        payload.CopyTo(framed, Envelope.HeaderSize);
        using var message = Request(HttpMethod.Post, path, sandboxId, token, user);
        message.Content = new ByteArrayContent(framed);
        message.Content.Headers.ContentType = new MediaTypeHeaderValue(proto ? "application/connect+proto" : "application/connect+json");
        using var response = await daemon.Raw.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"process.Process/Start answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(timeout.Token)}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(timeout.Token);
        var header = new byte[Envelope.HeaderSize];
        while (true)
        {
            await body.ReadExactlyAsync(header, timeout.Token);
            var (flags, length) = Envelope.ReadHeader(header);
            var bytes = new byte[length];
            await body.ReadExactlyAsync(bytes, timeout.Token);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new IOException("the stream ended before the process did: " + Encoding.UTF8.GetString(bytes));
            }
            var e = (proto ? StartResponse.Parser.ParseFrom(bytes) : Parser.Parse<StartResponse>(Encoding.UTF8.GetString(bytes))).Event;
            if (e?.EventCase == ProcessEvent.EventOneofCase.End)
            {
                return e.End.ExitCode;
            }
        }
    }

    public static Task<int> RunAsync(TestDaemon daemon, string sandboxId, string? token, string script, bool proto = false, string? user = null) =>
        StartAsync(daemon, sandboxId, token, new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", script } } }, proto, user);

    /// <summary>A unary filesystem.Filesystem call with a JSON body; returns the HTTP status.</summary>
    public static async Task<int> UnaryAsync(TestDaemon daemon, string sandboxId, string? token, string method, string json)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var message = Request(HttpMethod.Post, "/filesystem.Filesystem/" + method, sandboxId, token, "root");
        message.Content = new StringContent(json, Encoding.UTF8);
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await daemon.Raw.SendAsync(message, timeout.Token);
        return (int)response.StatusCode;
    }

    /// <summary>E2B's POST /files?path=...: one file as multipart; returns the HTTP status.</summary>
    public static async Task<int> UploadAsync(TestDaemon daemon, string sandboxId, string? token, string path, string text)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var message = Request(HttpMethod.Post, "/files?path=" + Uri.EscapeDataString(path) + "&username=root", sandboxId, token, null);
        var form = new MultipartFormDataContent();
        form.Add(new ByteArrayContent(Encoding.UTF8.GetBytes(text)), "file", Path.GetFileName(path));
        message.Content = form;
        using var response = await daemon.Raw.SendAsync(message, timeout.Token);
        return (int)response.StatusCode;
    }
}
