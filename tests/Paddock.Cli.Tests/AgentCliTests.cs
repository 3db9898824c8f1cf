using System.Security.Cryptography;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>exec, cp and shell run by the real binary against a real agent (reached as E2B's debug mode does).</summary>
public sealed class AgentCliTests : IClassFixture<AgentFixture>, IDisposable
{
    private readonly AgentProcess _agent;
    private readonly string _dir = TestDirs.Create("paddock-cli-");

    public AgentCliTests(AgentFixture fixture) => _agent = fixture.Agent;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Exec_streams_both_outputs_and_passes_the_exit_code_through()
    {
        var result = await Cli.RunAsync(Cli.AgentEnv(_agent), "exec", "sbx", "--", "echo out; echo err >&2; exit 7");
        Assert.Equal(7, result.ExitCode);
        Assert.Equal("out\n", result.Stdout);
        // EndsWith: on a host (not a sandbox) the login shell's profile may print its own warnings first.
        Assert.EndsWith("err\n", result.Stderr, StringComparison.Ordinal);

        var ok = await Cli.RunAsync(Cli.AgentEnv(_agent), "exec", "sbx", "--", "true");
        Assert.Equal(0, ok.ExitCode);
    }

    [Fact]
    public async Task Exec_quotes_several_arguments_as_an_argv()
    {
        var result = await Cli.RunAsync(Cli.AgentEnv(_agent), "exec", "sbx", "--", "printf", "[%s]\\n", "a b", "$HOME", "it's");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("[a b]\n[$HOME]\n[it's]\n", result.Stdout);
    }

    [Fact]
    public async Task Exec_forwards_stdin_with_dash_i_and_options_reach_the_command()
    {
        var result = await Cli.RunWithInputAsync(Cli.AgentEnv(_agent), "line one\nline two\n", "exec", "-i", "--cwd", _dir, "-e", "X=42", "sbx", "--", "echo $X $(pwd); cat");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal($"42 {_dir}\nline one\nline two\n", result.Stdout);
    }

    [Fact]
    public async Task Cp_copies_both_ways_and_reports_missing_files()
    {
        var local = Path.Combine(_dir, "up.bin");
        var data = RandomNumberGenerator.GetBytes(3 * 1024 * 1024 + 5);
        await File.WriteAllBytesAsync(local, data);
        var remote = Path.Combine(_dir, "remote", "copy.bin");

        var up = await Cli.RunAsync(Cli.AgentEnv(_agent), "cp", "--progress", local, $"sbx:{remote}");
        Assert.True(up.ExitCode == 0, up.ToString());
        Assert.Contains("100%", up.Stderr, StringComparison.Ordinal);
        Assert.Equal(data, await File.ReadAllBytesAsync(remote));

        var back = Path.Combine(_dir, "down.bin");
        var down = await Cli.RunAsync(Cli.AgentEnv(_agent), "cp", $"sbx:{remote}", back);
        Assert.True(down.ExitCode == 0, down.ToString());
        Assert.Equal(data, await File.ReadAllBytesAsync(back));

        var missing = await Cli.RunAsync(Cli.AgentEnv(_agent), "cp", $"sbx:{Path.Combine(_dir, "nope")}", Path.Combine(_dir, "nope-local"));
        Assert.Equal(66, missing.ExitCode);
        Assert.Contains("nope", missing.Stderr, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_dir, "nope-local")));
        Assert.False(File.Exists(Path.Combine(_dir, "nope-local.paddock-partial")));

        var bothLocal = await Cli.RunAsync(Cli.AgentEnv(_agent), "cp", local, back);
        Assert.Equal(64, bothLocal.ExitCode);
    }

    [Fact]
    public async Task Shell_runs_typed_commands_in_a_real_terminal_with_ctrl_c_resize_and_exit_code()
    {
        var env = string.Join(' ', Cli.AgentEnv(_agent).Select(kv => $"{kv.Key}={kv.Value}"));
        var marker = Path.Combine(_dir, "shell-exit");
        await using var tmux = await TmuxSession.StartAsync($"env {env} {Cli.Binary} shell sbx; echo $? > {marker}; sleep 60", 100, 30);
        await tmux.WaitForAsync(s => s.TrimEnd().EndsWith('#') || s.TrimEnd().EndsWith('$'), "a shell prompt");

        await tmux.SendKeysAsync("echo $((6*7))x", "Enter");
        await tmux.WaitForAsync(s => s.Contains("\n42x", StringComparison.Ordinal), "the command's output");

        await tmux.SendKeysAsync("sleep 60; echo not-$((2+3))", "Enter");
        await Task.Delay(500);
        await tmux.SendKeysAsync("C-c");
        await tmux.SendKeysAsync("echo after-$((1+1))", "Enter");
        var screen = await tmux.WaitForAsync(s => s.Contains("\nafter-2", StringComparison.Ordinal), "output after Ctrl-C");
        Assert.DoesNotContain("not-5", screen, StringComparison.Ordinal);

        await tmux.SendKeysAsync("stty size", "Enter");
        await tmux.WaitForAsync(s => s.Contains("30 100", StringComparison.Ordinal), "the first size");
        await tmux.ResizeAsync(90, 25);
        await Task.Delay(500);
        await tmux.SendKeysAsync("stty size", "Enter");
        await tmux.WaitForAsync(s => s.Contains("25 90", StringComparison.Ordinal), "the new size after SIGWINCH");

        await tmux.SendKeysAsync("exit 3", "Enter");
        for (var i = 0; i < 300 && !File.Exists(marker); i++)
        {
            await Task.Delay(100);
        }
        Assert.Equal("3", (await File.ReadAllTextAsync(marker)).Trim());
    }
}

/// <summary>Errors that need neither daemon nor agent: clear messages and distinct exit codes.</summary>
public sealed class OfflineCliTests
{
    [Fact]
    public async Task A_daemon_that_is_not_running_is_named_with_exit_69()
    {
        var port = AgentProcess.FreePort();
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_URL"] = $"http://127.0.0.1:{port}", ["PADDOCK_API_KEY"] = "x" }, "sandbox", "ls");
        Assert.Equal(69, result.ExitCode);
        Assert.Contains($"cannot reach the Paddock daemon at http://127.0.0.1:{port}", result.Stderr, StringComparison.Ordinal);
        Assert.Contains("paddock up", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_malformed_PADDOCK_URL_is_a_usage_error()
    {
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_URL"] = "not a url" }, "sandbox", "ls");
        Assert.Equal(64, result.ExitCode);
        Assert.Contains("PADDOCK_URL", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Up_replaces_itself_with_the_daemon_and_passes_options_on()
    {
        // /bin/echo stands in for the daemon: exec(2) must hand it our arguments and our stdout.
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_DAEMON"] = "/bin/echo" }, "up", "--listen", "http://127.0.0.1:1");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("--listen http://127.0.0.1:1\n", result.Stdout);
    }

    [Fact]
    public async Task Up_without_a_daemon_says_where_it_looked()
    {
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_DAEMON"] = "/nonexistent/paddockd" }, "up");
        Assert.Equal(69, result.ExitCode);
        Assert.Contains("/nonexistent/paddockd", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unreadable_key_file_is_named_when_the_key_is_missing()
    {
        var port = AgentProcess.FreePort();
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_URL"] = $"http://127.0.0.1:{port}", ["PADDOCK_STATE_DIR"] = "/nonexistent-state" }, "sandbox", "ls");
        // Nothing listens, so this fails to connect; the key source matters once a daemon refuses (DaemonCliTests).
        Assert.Equal(69, result.ExitCode);
    }
}
