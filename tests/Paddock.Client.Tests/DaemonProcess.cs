using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;

namespace Paddock.Client.Tests;

/// <summary>
/// The real paddockd started as a child process on a free loopback port, with its own state directory (which it
/// fills with its database and first API key). It creates real sandboxes, so it needs what the daemon needs: root,
/// runc, the published agent (artifacts/agent/paddock-agent, which scripts/setup makes) and the base template. The
/// template is built once and shared through PADDOCK_TEMPLATES_DIR, default /var/lib/paddock-test/templates (the
/// cache the daemon's own tests use, PADDOCK_TEST_STATE).
/// </summary>
public sealed class DaemonProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log = new();

    private DaemonProcess(Process process, Uri url, string stateDir)
    {
        _process = process;
        Url = url;
        StateDir = stateDir;
    }

    public Uri Url { get; }

    public string StateDir { get; }

    public string ApiKey { get; private set; } = "";

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    /// <summary>Connection options for the SDK: the daemon's URL and key, nothing from the environment.</summary>
    public ConnectionOptions Connection(string? apiKey = null) => new()
    {
        ApiUrl = Url,
        SandboxUrl = Url,
        ApiKey = apiKey ?? ApiKey,
        Debug = false,
        RequestTimeout = TimeSpan.FromSeconds(60),
    };

    public static async Task<DaemonProcess> StartAsync()
    {
        var port = AgentProcess.FreePort();
        var url = new Uri($"http://127.0.0.1:{port}");
        var state = Directory.CreateTempSubdirectory("paddock-client-daemon-").FullName;
        var (file, args) = Repo.Program("PADDOCK_DAEMON", "Paddock.Daemon", "paddockd", null);
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        var templates = Environment.GetEnvironmentVariable("PADDOCK_TEMPLATES_DIR") is { Length: > 0 } t
            ? t
            : Path.Combine(Environment.GetEnvironmentVariable("PADDOCK_TEST_STATE") is { Length: > 0 } ts ? ts : "/var/lib/paddock-test", "templates");
        foreach (var a in args.Concat(["--listen", url.ToString().TrimEnd('/'), "--state-dir", state, "--templates-dir", templates]))
        {
            start.ArgumentList.Add(a);
        }
        // The daemon must not take a key from the test runner's environment: the tests use the one it creates.
        start.Environment.Remove("PADDOCK_API_KEY");
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start paddockd");
        var daemon = new DaemonProcess(process, url, state);
        process.OutputDataReceived += (_, e) => daemon.Append(e.Data);
        process.ErrorDataReceived += (_, e) => daemon.Append(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        try
        {
            while (true)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"paddockd exited with {process.ExitCode} before it was ready: {daemon.Log}");
                }
                if (!PortOwner.IsListening(process.Id, port))
                {
                    await Task.Delay(100, ready.Token);
                    continue;
                }
                try
                {
                    using var response = await http.GetAsync(new Uri(url, "/health"), ready.Token);
                    var keyFile = Path.Combine(state, "api-key");
                    if (response.IsSuccessStatusCode && File.Exists(keyFile))
                    {
                        daemon.ApiKey = (await File.ReadAllTextAsync(keyFile, ready.Token)).Trim();
                        if (daemon.ApiKey.Length > 0)
                        {
                            return daemon;
                        }
                    }
                }
                catch (HttpRequestException)
                {
                    // not listening yet
                }
                catch (TaskCanceledException) when (!ready.IsCancellationRequested)
                {
                    // one probe timed out; the loop is bounded by `ready`
                }
                await Task.Delay(100, ready.Token);
            }
        }
        catch
        {
            await daemon.DisposeAsync();
            throw;
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            _log.AppendLine(line);
        }
    }

    /// <summary>Stops the daemon (SIGTERM, so it kills its sandboxes; SIGKILL after 30 s) and removes its state.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            using (var term = Process.Start("kill", ["-TERM", _process.Id.ToString(CultureInfo.InvariantCulture)]))
            {
                await term.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            }
            using var graceful = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _process.WaitForExitAsync(graceful.Token);
            }
            catch (OperationCanceledException)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
            }
        }
        _process.Dispose();
        try
        {
            Directory.Delete(StateDir, recursive: true);
        }
        catch (IOException)
        {
            // a sandbox's files may still be in use for a moment; the directory is under /tmp
        }
    }
}

/// <summary>One daemon for a test class.</summary>
public sealed class DaemonFixture : IAsyncLifetime
{
    public DaemonProcess Daemon { get; private set; } = null!;

    public async Task InitializeAsync() => Daemon = await DaemonProcess.StartAsync();

    public async Task DisposeAsync() => await Daemon.DisposeAsync();
}
