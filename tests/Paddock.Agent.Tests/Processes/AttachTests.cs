using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>Processes outlive their streams: Connect, List, tags, signals and unknown selectors.</summary>
public sealed class AttachTests : IClassFixture<AgentFixture>
{
    private readonly AgentFixture _fixture;

    public AttachTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    private ConnectClient Client(ConnectEncoding encoding = ConnectEncoding.Proto) => new(_fixture.Agent.Http, encoding);

    [Fact]
    public async Task A_second_client_attaches_by_tag_and_both_see_further_output_and_the_end()
    {
        using var cts = Calls.Timeout();
        var tag = "attach-" + Guid.NewGuid().ToString("n");
        await using var first = await ProcessRun.StartAsync(Client(), Calls.Shell("read a; echo \"A $a\"; read b; echo \"B $b\"", stdin: true, tag: tag), cts.Token);
        await using var second = await ProcessRun.ConnectAsync(Client(ConnectEncoding.Json), Calls.Tag(tag), cts.Token);
        Assert.Equal(first.Pid, second.Pid);

        await Client().SendStdinAsync(first.Pid, "one\ntwo\n", cts.Token);
        var endA = await first.WaitEndAsync(cts.Token);
        var endB = await second.WaitEndAsync(cts.Token);

        Assert.Equal("A one\nB two\n", first.StdoutText);
        Assert.Equal("A one\nB two\n", second.StdoutText);
        Assert.Equal(0, endA.ExitCode);
        Assert.Equal(0, endB.ExitCode);
    }

    [Fact]
    public async Task A_process_keeps_running_after_its_client_disconnects_and_a_new_client_gets_the_rest()
    {
        using var cts = Calls.Timeout();
        var tag = "reconnect-" + Guid.NewGuid().ToString("n");
        uint pid;
        await using (var run = await ProcessRun.StartAsync(Client(), Calls.Shell("echo first; read line; echo \"got $line\"", stdin: true, tag: tag), cts.Token))
        {
            await run.WaitForOutputAsync(o => o == "first\n", cts.Token);
            pid = run.Pid;
        } // disconnects mid-stream

        var list = await Client().ListAsync(cts.Token);
        Assert.Contains(list.Processes, p => p.Pid == pid && p.Tag == tag);

        await using var again = await ProcessRun.ConnectAsync(Client(), Calls.Pid(pid), cts.Token);
        await Client().SendStdinAsync(pid, "hello\n", cts.Token);
        var end = await again.WaitEndAsync(cts.Token);
        Assert.Equal("got hello\n", again.StdoutText);
        Assert.Equal(0, end.ExitCode);
    }

    [Fact]
    public async Task List_shows_running_processes_with_their_config_and_forgets_finished_ones()
    {
        using var cts = Calls.Timeout();
        var tag = "list-" + Guid.NewGuid().ToString("n");
        var request = Calls.Shell("sleep 30", tag: tag);
        request.Process.Envs["MARK"] = tag;
        request.Process.Cwd = "/tmp";
        await using var run = await ProcessRun.StartAsync(Client(ConnectEncoding.Json), request, cts.Token);

        var listed = Assert.Single((await Client(ConnectEncoding.Json).ListAsync(cts.Token)).Processes, p => p.Pid == run.Pid);
        Assert.Equal(tag, listed.Tag);
        Assert.Equal("/bin/sh", listed.Config.Cmd);
        Assert.Equal(["-c", "sleep 30"], listed.Config.Args);
        Assert.Equal(tag, listed.Config.Envs["MARK"]);
        Assert.Equal("/tmp", listed.Config.Cwd);

        await Client().SignalAsync(run.Pid, Signal.Sigterm, cts.Token);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal("signal: terminated", end.Status);
        Assert.DoesNotContain((await Client().ListAsync(cts.Token)).Processes, p => p.Pid == run.Pid);
    }

    [Fact]
    public async Task SIGKILL_kills_the_whole_process_group_of_a_shell()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 1000 & echo $!; wait"), cts.Token);
        await run.WaitForOutputAsync(o => o.EndsWith('\n'), cts.Token);
        var child = int.Parse(run.StdoutText.Trim(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(Directory.Exists($"/proc/{child}"));

        await Client().SignalAsync(run.Pid, Signal.Sigkill, cts.Token);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal(-1, end.ExitCode);
        Assert.False(end.Exited);
        Assert.Equal("signal: killed", end.Status);
        Assert.Equal("signal: killed", end.Error);
        // The background child died with the shell (and was reaped by the agent, its subreaper).
        await Calls.EventuallyAsync(() => !Directory.Exists($"/proc/{child}"), cts.Token);
    }

    [Fact]
    public async Task An_unknown_pid_or_tag_is_not_found_for_every_call()
    {
        using var cts = Calls.Timeout();
        const uint missing = 999_999_999;
        var client = Client();
        await AssertNotFound(() => ProcessRun.ConnectAsync(client, Calls.Pid(missing), cts.Token));
        await AssertNotFound(() => ProcessRun.ConnectAsync(client, Calls.Tag("no-such-tag"), cts.Token));
        await AssertNotFound(() => client.SendStdinAsync(missing, "x", cts.Token));
        await AssertNotFound(() => client.CloseStdinAsync(missing, cts.Token));
        await AssertNotFound(() => client.SignalAsync(missing, Signal.Sigkill, cts.Token));
        await AssertNotFound(() => client.UnaryAsync<UpdateRequest, UpdateResponse>("/process.Process/Update",
            new UpdateRequest { Process = Calls.Pid(missing), Pty = new PTY { Size = new PTY.Types.Size { Cols = 80, Rows = 24 } } }, cts.Token));

        static async Task AssertNotFound(Func<Task> call)
        {
            var error = await Assert.ThrowsAsync<ConnectException>(call);
            Assert.Equal(ConnectCode.NotFound, error.Code);
            Assert.Contains("not found", error.Message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_unspecified_signal_and_an_empty_selector_are_invalid_argument()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 30"), cts.Token);
        var bad = await Assert.ThrowsAsync<ConnectException>(() => Client().SignalAsync(run.Pid, Signal.Unspecified, cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, bad.Code);
        var empty = await Assert.ThrowsAsync<ConnectException>(() => Client().UnaryAsync<SendSignalRequest, SendSignalResponse>("/process.Process/SendSignal",
            new SendSignalRequest { Process = new ProcessSelector(), Signal = Signal.Sigkill }, cts.Token));
        Assert.Equal(ConnectCode.InvalidArgument, empty.Code);
        await Client().SignalAsync(run.Pid, Signal.Sigkill, cts.Token);
        await run.WaitEndAsync(cts.Token);
    }
}
