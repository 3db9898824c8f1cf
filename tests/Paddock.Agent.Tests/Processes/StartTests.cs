using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>Start: output, exit, environment, working directory, stdin and the errors a caller can make.</summary>
public sealed class StartTests : IClassFixture<AgentFixture>
{
    private readonly AgentFixture _fixture;

    public StartTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    private ConnectClient Client(ConnectEncoding encoding = ConnectEncoding.Proto) => new(_fixture.Agent.Http, encoding);

    [Theory]
    [InlineData(ConnectEncoding.Proto)]
    [InlineData(ConnectEncoding.Json)]
    public async Task A_command_streams_stdout_and_stderr_apart_and_ends_with_its_exit_status(ConnectEncoding encoding)
    {
        using var cts = Calls.Timeout();
        // The SDK's commands.run sends exactly this shape: /bin/bash -l -c CMD, stdin off. HOME points away from
        // root's own login files: on the build machines they run `pyenv rehash`, which serialises on a lock file and
        // can take longer than the test's timeout when tests run in parallel.
        var request = new StartRequest
        {
            Process = new ProcessConfig { Cmd = "/bin/bash", Args = { "-l", "-c", "echo hello; echo oops >&2; exit 3" }, Envs = { ["HOME"] = "/nonexistent" } },
            Stdin = false,
        };
        await using var run = await ProcessRun.StartAsync(Client(encoding), request, cts.Token);

        var end = await run.WaitEndAsync(cts.Token);

        Assert.True(run.Pid > 1);
        Assert.Equal("hello\n", run.StdoutText);
        Assert.Equal("oops\n", run.StderrText);
        Assert.Equal(3, end.ExitCode);
        Assert.True(end.Exited);
        Assert.Equal("exit status 3", end.Status);
        Assert.Equal("exit status 3", end.Error);
    }

    [Fact]
    public async Task A_successful_command_has_no_error()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("true"), cts.Token);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal(0, end.ExitCode);
        Assert.Equal("exit status 0", end.Status);
        Assert.False(end.HasError);
    }

    [Fact]
    public async Task The_environment_is_the_login_base_plus_the_request_and_nothing_of_the_agent()
    {
        using var cts = Calls.Timeout();
        // env itself, not a shell: a shell would add PWD, SHLVL and _.
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "env", Envs = { ["FOO"] = "bar baz", ["HOME"] = "/override" } }, Stdin = false };
        await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token);
        await run.WaitEndAsync(cts.Token);

        var env = run.StdoutText.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).ToDictionary(p => p[0], p => p[1]);
        Assert.Equal(["FOO", "HOME", "LOGNAME", "PATH", "SHELL", "USER"], env.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("bar baz", env["FOO"]);
        Assert.Equal("/override", env["HOME"]);
        Assert.Equal("root", env["USER"]);
        Assert.Equal("root", env["LOGNAME"]);
    }

    [Fact]
    public async Task The_working_directory_is_the_request_s_or_else_the_user_s_home()
    {
        using var cts = Calls.Timeout();
        var dir = Directory.CreateTempSubdirectory("paddock-cwd-");
        try
        {
            var explicitCwd = Calls.Shell("pwd");
            explicitCwd.Process.Cwd = dir.FullName;
            await using var a = await ProcessRun.StartAsync(Client(), explicitCwd, cts.Token);
            await a.WaitEndAsync(cts.Token);
            Assert.Equal(dir.FullName + "\n", a.StdoutText);

            await using var b = await ProcessRun.StartAsync(Client(), Calls.Shell("pwd"), cts.Token);
            await b.WaitEndAsync(cts.Token);
            Assert.Equal("/root\n", b.StdoutText);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_missing_working_directory_is_invalid_argument()
    {
        using var cts = Calls.Timeout();
        var request = Calls.Shell("pwd");
        request.Process.Cwd = "/nonexistent/paddock-test";
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        Assert.Contains("/nonexistent/paddock-test", error.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_command_that_is_not_in_PATH_is_invalid_argument_naming_it()
    {
        using var cts = Calls.Timeout();
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "paddock-no-such-command" } };
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        Assert.Contains("paddock-no-such-command", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_file_without_execute_permission_cannot_be_executed()
    {
        using var cts = Calls.Timeout();
        var file = Path.Combine(Path.GetTempPath(), $"paddock-noexec-{Guid.NewGuid():n}");
        await File.WriteAllTextAsync(file, "#!/bin/sh\necho hi\n", cts.Token);
        try
        {
            var request = new StartRequest { Process = new ProcessConfig { Cmd = file } };
            var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token));
            Assert.Equal(ConnectCode.InvalidArgument, error.Code);
            Assert.Contains("permission denied", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task An_empty_cmd_is_invalid_argument()
    {
        using var cts = Calls.Timeout();
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), new StartRequest { Process = new ProcessConfig() }, cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
    }

    [Fact]
    public async Task With_stdin_disabled_the_process_reads_end_of_file()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("cat; echo done", stdin: false), cts.Token);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal("done\n", run.StdoutText);
        Assert.Equal(0, end.ExitCode);

        // And there is no stdin to write to.
        await using var waiting = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 30"), cts.Token);
        var error = await Assert.ThrowsAsync<ConnectException>(() => Client().SendStdinAsync(waiting.Pid, "x", cts.Token));
        Assert.Equal(ConnectCode.FailedPrecondition, error.Code);
        await Client().SignalAsync(waiting.Pid, Signal.Sigkill, cts.Token);
    }

    [Fact]
    public async Task Stdin_is_open_when_the_request_does_not_say_and_input_then_close_reach_the_process()
    {
        using var cts = Calls.Timeout();
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "cat" } }; // no stdin field: open
        await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token);

        await Client().SendStdinAsync(run.Pid, "first line\n", cts.Token);
        await run.WaitForOutputAsync(o => o == "first line\n", cts.Token);
        await Client(ConnectEncoding.Json).SendStdinAsync(run.Pid, "second", cts.Token);
        await Client().SendStdinAsync(run.Pid, "", cts.Token); // empty input is a no-op
        await Client().CloseStdinAsync(run.Pid, cts.Token);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal("first line\nsecond", run.StdoutText);
        Assert.Equal(0, end.ExitCode);
    }

    [Fact]
    public async Task StreamInput_delivers_data_events_in_order_and_skips_keepalives()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("cat", stdin: true), cts.Token);

        async IAsyncEnumerable<StreamInputRequest> Input()
        {
            yield return new StreamInputRequest { Start = new StreamInputRequest.Types.StartEvent { Process = Calls.Pid(run.Pid) } };
            for (var i = 0; i < 50; i++)
            {
                yield return new StreamInputRequest { Data = new StreamInputRequest.Types.DataEvent { Input = new ProcessInput { Stdin = Google.Protobuf.ByteString.CopyFromUtf8($"{i},") } } };
                if (i % 10 == 0)
                {
                    yield return new StreamInputRequest { Keepalive = new StreamInputRequest.Types.KeepAlive() };
                    await Task.Yield();
                }
            }
        }

        await Client().ClientStreamAsync<StreamInputRequest, StreamInputResponse>("/process.Process/StreamInput", Input(), cts.Token);
        await Client().CloseStdinAsync(run.Pid, cts.Token);
        await run.WaitEndAsync(cts.Token);

        Assert.Equal(string.Concat(Enumerable.Range(0, 50).Select(i => $"{i},")), run.StdoutText);
    }

    [Fact]
    public async Task StreamInput_without_a_start_event_first_is_invalid_argument()
    {
        using var cts = Calls.Timeout();
        async IAsyncEnumerable<StreamInputRequest> Input()
        {
            yield return new StreamInputRequest { Data = new StreamInputRequest.Types.DataEvent { Input = new ProcessInput { Stdin = Google.Protobuf.ByteString.CopyFromUtf8("x") } } };
            await Task.CompletedTask;
        }

        var error = await Assert.ThrowsAsync<ConnectException>(() => Client(ConnectEncoding.Json).ClientStreamAsync<StreamInputRequest, StreamInputResponse>("/process.Process/StreamInput", Input(), cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
    }

    [Fact]
    public async Task Keepalives_arrive_while_a_quiet_process_runs()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 2.5; echo late"), cts.Token, new ConnectCallOptions { KeepAliveSeconds = 1 });
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal("late\n", run.StdoutText);
        Assert.Equal(0, end.ExitCode);
        Assert.True(run.KeepAlives >= 1, $"expected keepalives in 2.5 s at a 1 s interval, got {run.KeepAlives}");
    }

    [Fact]
    public async Task A_large_output_arrives_complete_and_in_order_before_the_end_event()
    {
        using var cts = Calls.Timeout(120);
        // 32 MiB of random bytes on stdout; their digest on stderr, computed in the sandbox.
        var script = "f=$(mktemp); head -c 33554432 /dev/urandom > $f; cat $f; sha256sum < $f | cut -d' ' -f1 >&2; rm -f $f";
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell(script), cts.Token);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal(0, end.ExitCode);
        Assert.Equal(33554432, run.Stdout.Length);
        var digest = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(run.Stdout.ToArray()));
        Assert.Equal(digest + "\n", run.StderrText);
    }

    [Fact]
    public async Task The_call_deadline_kills_the_process_as_E2B_command_timeouts_do()
    {
        using var cts = Calls.Timeout();
        // 5 s rather than less: the deadline counts from the call's start, and on a loaded CI machine the start event
        // (which gives the pid this test needs) once came after a 1.5 s deadline had already passed.
        var stream = ProcessRun.StartAsync(Client(), Calls.Shell("echo started; sleep 60", tag: "deadline-test"), cts.Token, new ConnectCallOptions { TimeoutMs = 5000 });
        await using var run = await stream;
        var error = await Assert.ThrowsAsync<ConnectException>(() => run.WaitEndAsync(cts.Token));
        Assert.Equal(ConnectCode.DeadlineExceeded, error.Code);

        // The process group was killed: it is reaped, then leaves the table (the reaper removes it just after the
        // wait, so the list may name it for a moment after /proc does not: wait for both, within the test's timeout).
        await Calls.EventuallyAsync(() => !Directory.Exists($"/proc/{run.Pid}"), cts.Token);
        var listed = true;
        while (listed)
        {
            var list = await Client().ListAsync(cts.Token);
            listed = list.Processes.Any(p => p.Pid == run.Pid);
            if (listed)
            {
                await Task.Delay(50, cts.Token);
            }
        }
    }
}
