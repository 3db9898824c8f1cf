using System.Text;

namespace Paddock.Client.Tests;

/// <summary>sandbox.Commands against a real agent.</summary>
public sealed class CommandsTests : IClassFixture<AgentFixture>
{
    private readonly AgentProcess _agent;

    public CommandsTests(AgentFixture fixture) => _agent = fixture.Agent;

    [Fact]
    public async Task RunAsync_returns_stdout_stderr_and_exit_code_zero()
    {
        await using var sandbox = _agent.Sandbox();
        var result = await sandbox.Commands.RunAsync("echo out; echo err >&2", cancellationToken: Limits.Token());
        Assert.Equal(0, result.ExitCode);
        Assert.Equal("out\n", result.Stdout);
        // EndsWith: on a host (not a sandbox) the login shell's profile may print its own warnings first.
        Assert.EndsWith("err\n", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_non_zero_exit_throws_CommandExitException_with_the_result()
    {
        await using var sandbox = _agent.Sandbox();
        var ex = await Assert.ThrowsAsync<CommandExitException>(() => sandbox.Commands.RunAsync("echo partial; echo bad >&2; exit 3", cancellationToken: Limits.Token()));
        Assert.Equal(3, ex.ExitCode);
        Assert.Equal("partial\n", ex.Result.Stdout);
        Assert.EndsWith("bad\n", ex.Result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Envs_cwd_and_user_reach_the_process()
    {
        await using var sandbox = _agent.Sandbox();
        var cwd = TestDirs.Create("paddock-client-cwd-");
        try
        {
            // "daemon" exists on every Debian system and is not the agent's default user.
            var result = await sandbox.Commands.RunAsync("echo \"$GREETING\"; pwd; whoami", new CommandOptions
            {
                Envs = new Dictionary<string, string> { ["GREETING"] = "hej då" },
                Cwd = cwd,
                User = "daemon",
            }, Limits.Token());
            Assert.Equal($"hej då\n{cwd}\ndaemon\n", result.Stdout);
            Assert.Equal(AgentProcess.DefaultUser + "\n", (await sandbox.Commands.RunAsync("whoami", cancellationToken: Limits.Token())).Stdout);
        }
        finally
        {
            Directory.Delete(cwd, recursive: true);
        }
    }

    [Fact]
    public async Task An_unknown_user_is_an_AuthenticationException()
    {
        await using var sandbox = _agent.Sandbox();
        var ex = await Assert.ThrowsAsync<AuthenticationException>(() => sandbox.Commands.RunAsync("true", new CommandOptions { User = "no-such-user-here" }, Limits.Token()));
        Assert.Contains("no-such-user-here", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_command_past_its_timeout_is_a_TimeoutException()
    {
        await using var sandbox = _agent.Sandbox();
        var ex = await Assert.ThrowsAsync<SandboxTimeoutException>(() => sandbox.Commands.RunAsync("sleep 30", new CommandOptions { Timeout = TimeSpan.FromSeconds(1) }, Limits.Token()));
        Assert.IsAssignableFrom<TimeoutException>(ex);
    }

    [Fact]
    public async Task Callbacks_and_the_output_stream_see_every_piece_in_order()
    {
        await using var sandbox = _agent.Sandbox();
        var seen = new StringBuilder();
        var handle = await sandbox.Commands.StartAsync("for i in 1 2 3; do echo line$i; sleep 0.1; done; echo done >&2", new CommandOptions
        {
            OnStdout = s => { lock (seen) { seen.Append(s); } },
        }, Limits.Token());
        await using (handle)
        {
            var events = new List<CommandOutput>();
            await foreach (var e in handle.ReadOutputAsync(Limits.Token()))
            {
                events.Add(e);
            }
            var result = await handle.WaitAsync(Limits.Token());
            Assert.Equal("line1\nline2\nline3\n", string.Concat(events.Where(e => e.Stream == OutputStream.Stdout).Select(e => e.Text)));
            Assert.EndsWith("done\n", string.Concat(events.Where(e => e.Stream == OutputStream.Stderr).Select(e => e.Text)), StringComparison.Ordinal);
            Assert.Equal("line1\nline2\nline3\n", Encoding.UTF8.GetString(events.Where(e => e.Stream == OutputStream.Stdout).SelectMany(e => e.Data.ToArray()).ToArray()));
            Assert.True(events.Count(e => e.Stream == OutputStream.Stdout) >= 2, "the output arrived in pieces, as it was written");
            Assert.Equal("line1\nline2\nline3\n", result.Stdout);
            lock (seen)
            {
                Assert.Equal("line1\nline2\nline3\n", seen.ToString());
            }
        }
    }

    [Fact]
    public async Task A_multibyte_character_split_across_writes_is_decoded_whole()
    {
        await using var sandbox = _agent.Sandbox();
        // "é" is C3 A9: write the two bytes in separate writes with a pause between.
        var result = await sandbox.Commands.RunAsync("printf '\\303'; sleep 0.2; printf '\\251\\n'", cancellationToken: Limits.Token());
        Assert.Equal("é\n", result.Stdout);
    }

    [Fact]
    public async Task Stdin_can_be_written_and_closed()
    {
        await using var sandbox = _agent.Sandbox();
        await using var handle = await sandbox.Commands.StartAsync("cat; echo end", new CommandOptions { Stdin = true }, Limits.Token());
        await handle.SendStdinAsync("first\n", Limits.Token());
        await handle.SendStdinAsync(Encoding.UTF8.GetBytes("second\n"), Limits.Token());
        await handle.CloseStdinAsync(Limits.Token());
        var result = await handle.WaitAsync(Limits.Token());
        Assert.Equal("first\nsecond\nend\n", result.Stdout);
    }

    [Fact]
    public async Task Background_commands_can_be_listed_attached_to_and_killed()
    {
        await using var sandbox = _agent.Sandbox();
        await using var handle = await sandbox.Commands.StartAsync("echo started; sleep 60", new CommandOptions { Timeout = TimeSpan.Zero }, Limits.Token());
        var processes = await sandbox.Commands.ListAsync(Limits.Token());
        var listed = Assert.Single(processes, p => p.Pid == handle.Pid);
        Assert.Equal("/bin/bash", listed.Cmd);
        Assert.Contains("echo started; sleep 60", listed.Args);

        await using var attached = await sandbox.Commands.ConnectAsync(handle.Pid, new CommandConnectOptions { Timeout = TimeSpan.Zero }, Limits.Token());
        Assert.Equal(handle.Pid, attached.Pid);
        await foreach (var output in handle.ReadOutputAsync(Limits.Token()))
        {
            if (handle.Stdout.Contains("started", StringComparison.Ordinal))
            {
                break;
            }
        }

        Assert.True(await sandbox.Commands.KillAsync(handle.Pid, Limits.Token()));
        var ex = await Assert.ThrowsAsync<CommandExitException>(() => handle.WaitAsync(Limits.Token()));
        Assert.NotEqual(0, ex.ExitCode);
        Assert.Contains("started", ex.Result.Stdout, StringComparison.Ordinal);
        await Assert.ThrowsAsync<CommandExitException>(() => attached.WaitAsync(Limits.Token()));

        Assert.False(await sandbox.Commands.KillAsync(handle.Pid, Limits.Token()));
        Assert.DoesNotContain(await sandbox.Commands.ListAsync(Limits.Token()), p => p.Pid == handle.Pid);
    }

    [Fact]
    public async Task Attaching_to_an_unknown_pid_is_a_NotFoundException()
    {
        await using var sandbox = _agent.Sandbox();
        await Assert.ThrowsAsync<NotFoundException>(() => sandbox.Commands.ConnectAsync(999_999, cancellationToken: Limits.Token()));
    }

    [Fact]
    public async Task Cancelling_RunAsync_kills_the_command()
    {
        await using var sandbox = _agent.Sandbox();
        var marker = $"paddock-cancel-{Guid.NewGuid():N}";
        using var cancel = new CancellationTokenSource();
        var run = sandbox.Commands.RunAsync($"sleep 60 # {marker}", new CommandOptions { Timeout = TimeSpan.Zero }, cancel.Token);
        // Wait until the process shows up, then cancel (bounded: 100 tries of 100 ms).
        ProcessInfo? process = null;
        for (var i = 0; i < 100 && process is null; i++)
        {
            process = (await sandbox.Commands.ListAsync(Limits.Token())).FirstOrDefault(p => p.Args.Any(a => a.Contains(marker, StringComparison.Ordinal)));
            if (process is null)
            {
                await Task.Delay(100, Limits.Token());
            }
        }
        Assert.NotNull(process);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        var stillThere = true;
        for (var i = 0; i < 100 && stillThere; i++)
        {
            stillThere = (await sandbox.Commands.ListAsync(Limits.Token())).Any(p => p.Pid == process.Pid);
            if (stillThere)
            {
                await Task.Delay(100, Limits.Token());
            }
        }
        Assert.False(stillThere, "the cancelled command was killed");
    }
}
