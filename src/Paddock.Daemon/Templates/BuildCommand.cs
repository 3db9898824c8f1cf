using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Paddock.Daemon.Proxy;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Runs one shell command in a build sandbox through its agent, as an SDK would: process.Process/Start (Connect,
/// JSON codec, server stream) over the proxy's sandbox connections, as <paramref name="user"/>, with the build's
/// environment and working directory. Output lines go to the build log as they come.
/// </summary>
internal static class BuildCommand
{
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    /// <summary>The command's exit code; throws <see cref="IOException"/> when the stream breaks before the process ends.</summary>
    public static Task<int> RunAsync(SandboxHttpClient client, string sandboxId, string? accessToken, string command, string? user,
        IReadOnlyDictionary<string, string> env, string? workdir, Action<string, bool> onLine, CancellationToken cancellationToken, string shell = "/bin/sh") =>
        RunCoreAsync(client, sandboxId, accessToken, command, user, env, workdir, onLine, detach: false, cancellationToken, shell);

    /// <summary>
    /// Starts the command and returns 0 once the agent says it runs, leaving it running: the agent does not end a
    /// process when the client of its Start stream goes away (Paddock.Agent's ProcessService: only a deadline does).
    /// </summary>
    public static Task<int> StartDetachedAsync(SandboxHttpClient client, string sandboxId, string? accessToken, string command, string? user,
        IReadOnlyDictionary<string, string> env, string? workdir, CancellationToken cancellationToken) =>
        RunCoreAsync(client, sandboxId, accessToken, command, user, env, workdir, (_, _) => { }, detach: true, cancellationToken);

    private static async Task<int> RunCoreAsync(SandboxHttpClient client, string sandboxId, string? accessToken, string command, string? user,
        IReadOnlyDictionary<string, string> env, string? workdir, Action<string, bool> onLine, bool detach, CancellationToken cancellationToken, string shell = "/bin/sh")
    {
        var config = new ProcessConfig { Cmd = shell, Args = { "-c", command } };
        foreach (var (name, value) in env)
        {
            config.Envs[name] = value;
        }
        if (workdir is not null)
        {
            config.Cwd = workdir;
        }
        var json = Encoding.UTF8.GetBytes(JsonFormatter.Default.Format(new StartRequest { Process = config }));
        var framed = new byte[Envelope.HeaderSize + json.Length];
        Envelope.WriteHeader(framed, 0, json.Length);
        json.CopyTo(framed, Envelope.HeaderSize);

        var uri = new Uri(SandboxHttpClient.DestinationPrefix(new SandboxTarget(sandboxId, AgentPort)) + "process.Process/Start");
        // Awake until the output stream ends (the idle freezer; the client's own lease covers only the headers).
        using var awake = await client.HoldAwakeAsync(sandboxId, cancellationToken);
        using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new ByteArrayContent(framed), Version = new Version(1, 1) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/connect+json");
        request.Headers.Add("Connect-Protocol-Version", "1");
        Authenticate(request, accessToken, user);
        using var response = await client.Invoker.SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"the agent refused the command ({(int)response.StatusCode}): {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
        var stdout = new LineSplitter(line => onLine(line, false));
        var stderr = new LineSplitter(line => onLine(line, true));
        var header = new byte[Envelope.HeaderSize];
        while (true)
        {
            await body.ReadExactlyAsync(header, cancellationToken);
            var (flags, length) = Envelope.ReadHeader(header);
            if (length > 16 * 1024 * 1024)
            {
                throw new IOException($"the agent sent a message of {length} bytes");
            }
            var payload = new byte[length];
            await body.ReadExactlyAsync(payload, cancellationToken);
            var text = Encoding.UTF8.GetString(payload);
            if ((flags & Envelope.EndStreamFlag) != 0)
            {
                throw new IOException("the agent ended the stream before the process ended: " + text);
            }
            var e = Parser.Parse<StartResponse>(text).Event;
            switch (e?.EventCase)
            {
                case ProcessEvent.EventOneofCase.Start when detach:
                    return 0;
                case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout:
                    stdout.Add(e.Data.Stdout.ToStringUtf8());
                    break;
                case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr:
                    stderr.Add(e.Data.Stderr.ToStringUtf8());
                    break;
                case ProcessEvent.EventOneofCase.End:
                    stdout.Flush();
                    stderr.Flush();
                    if (!e.End.Exited && e.End.HasError)
                    {
                        onLine(e.End.Error, true);
                    }
                    return e.End.Exited ? e.End.ExitCode : -1;
            }
        }
    }

    private const int AgentPort = Runtimes.AgentBundle.AgentPort;

    /// <summary>The agent's token, and the user the call runs as (envd's way: Basic auth with the name and no password).</summary>
    internal static void Authenticate(HttpRequestMessage request, string? accessToken, string? user)
    {
        if (accessToken is not null)
        {
            request.Headers.Add("X-Access-Token", accessToken);
        }
        if (user is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":")));
        }
    }

    /// <summary>Uploads the host file <paramref name="hostPath"/> to <paramref name="sandboxPath"/> as root (the agent's POST /files).</summary>
    public static async Task UploadAsync(SandboxHttpClient client, string sandboxId, string? accessToken, string hostPath, string sandboxPath, CancellationToken cancellationToken, string? user = "root")
    {
        var uri = new Uri(SandboxHttpClient.DestinationPrefix(new SandboxTarget(sandboxId, AgentPort)) + "files?path=" + Uri.EscapeDataString(sandboxPath));
        using var awake = await client.HoldAwakeAsync(sandboxId, cancellationToken);
        await using var file = new FileStream(hostPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        using var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new StreamContent(file), Version = new Version(1, 1) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        request.Content.Headers.ContentLength = file.Length;
        Authenticate(request, accessToken, user);
        using var response = await client.Invoker.SendAsync(request, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw new IOException($"uploading the COPY sources into the build sandbox failed ({(int)response.StatusCode}): {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
    }

    /// <summary>Cuts chunks of output into lines (a chunk may end mid-line).</summary>
    private sealed class LineSplitter(Action<string> onLine)
    {
        private readonly StringBuilder _pending = new();

        public void Add(string chunk)
        {
            _pending.Append(chunk);
            var text = _pending.ToString();
            var last = text.LastIndexOf('\n');
            if (last < 0)
            {
                return;
            }
            foreach (var line in text[..last].Split('\n'))
            {
                onLine(line.TrimEnd('\r'));
            }
            _pending.Clear().Append(text[(last + 1)..]);
        }

        public void Flush()
        {
            if (_pending.Length > 0)
            {
                onLine(_pending.ToString());
                _pending.Clear();
            }
        }
    }
}
