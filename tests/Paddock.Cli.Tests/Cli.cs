using System.Diagnostics;
using System.Text;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>Runs the real `paddock` binary with a chosen environment and captures what it prints.</summary>
internal static class Cli
{
    public static string Binary
    {
        get
        {
            if (Environment.GetEnvironmentVariable("PADDOCK_CLI") is { Length: > 0 } configured)
            {
                return configured;
            }
            var path = Path.Combine(Repo.Root, "src", "Paddock.Cli", "bin", Repo.Configuration, "net10.0", "paddock");
            return File.Exists(path) ? path : throw new InvalidOperationException($"{path} does not exist: build src/Paddock.Cli ({Repo.Configuration}) first, or set PADDOCK_CLI");
        }
    }

    /// <summary>The environment for talking to a bare agent as debug mode does (no control plane).</summary>
    public static Dictionary<string, string?> AgentEnv(AgentProcess agent) => new()
    {
        ["E2B_DEBUG"] = "true",
        ["E2B_SANDBOX_URL"] = agent.Url.ToString(),
    };

    /// <summary>The environment for talking to a daemon with its key.</summary>
    public static Dictionary<string, string?> DaemonEnv(DaemonProcess daemon, string? key = null) => new()
    {
        ["PADDOCK_URL"] = daemon.Url.ToString(),
        ["PADDOCK_API_KEY"] = key ?? daemon.ApiKey,
    };

    public static async Task<CliResult> RunWithInputAsync(IReadOnlyDictionary<string, string?> env, string? stdin, params string[] args)
    {
        var start = new ProcessStartInfo(Binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        // Nothing from the test runner's own configuration leaks in; each test says what it wants.
        foreach (var name in new[] { "PADDOCK_URL", "PADDOCK_API_KEY", "PADDOCK_STATE_DIR", "E2B_API_URL", "E2B_SANDBOX_URL", "E2B_API_KEY", "E2B_DOMAIN", "E2B_DEBUG" })
        {
            start.Environment.Remove(name);
        }
        foreach (var (name, value) in env)
        {
            start.Environment[name] = value;
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start paddock");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
        }
        process.StandardInput.Close();
        using var limit = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"paddock {string.Join(' ', args)} did not finish within 180 s");
        }
        return new CliResult(process.ExitCode, await stdout, await stderr);
    }

    public static Task<CliResult> RunAsync(IReadOnlyDictionary<string, string?> env, params string[] args) => RunWithInputAsync(env, null, args);
}

internal sealed record CliResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\nstdout: {Stdout}\nstderr: {Stderr}";
}

/// <summary>A tmux session: a real terminal for interactive commands (send-keys in, capture-pane out).</summary>
internal sealed class TmuxSession : IAsyncDisposable
{
    private readonly string _name = "paddock-test-" + Guid.NewGuid().ToString("N")[..12];

    public string Name => _name;

    public static async Task<TmuxSession> StartAsync(string command, int cols, int rows)
    {
        var session = new TmuxSession();
        var result = await TmuxAsync("new-session", "-d", "-s", session._name, "-x", cols.ToString(System.Globalization.CultureInfo.InvariantCulture), "-y", rows.ToString(System.Globalization.CultureInfo.InvariantCulture), command);
        if (result.ExitCode != 0)
        {
            throw new InvalidOperationException($"tmux new-session failed: {result}");
        }
        return session;
    }

    public Task SendKeysAsync(params string[] keys) => TmuxAsync(["send-keys", "-t", _name, .. keys]);

    public Task ResizeAsync(int cols, int rows) => TmuxAsync("resize-window", "-t", _name, "-x", cols.ToString(System.Globalization.CultureInfo.InvariantCulture), "-y", rows.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public async Task<string> ScreenAsync() => (await TmuxAsync("capture-pane", "-t", _name, "-p", "-S", "-")).Stdout;

    /// <summary>Polls the screen until the condition holds: bounded to 600 tries of 100 ms.</summary>
    public async Task<string> WaitForAsync(Func<string, bool> condition, string what)
    {
        var screen = "";
        for (var i = 0; i < 600; i++)
        {
            screen = await ScreenAsync();
            if (condition(screen))
            {
                return screen;
            }
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"the terminal never showed {what}; it shows:\n{screen}");
    }

    private static async Task<CliResult> TmuxAsync(params string[] args)
    {
        var start = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException("tmux is needed for the terminal tests (apt-get install tmux; scripts/setup installs it)", ex);
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            return new CliResult(process.ExitCode, await stdout, await stderr);
        }
    }

    public async ValueTask DisposeAsync() => await TmuxAsync("kill-session", "-t", _name);
}
