using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>Processes on a pseudo-terminal: size, resize, input, controlling terminal.</summary>
public sealed class PtyTests : IClassFixture<AgentFixture>
{
    private readonly AgentFixture _fixture;

    public PtyTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    private ConnectClient Client(ConnectEncoding encoding = ConnectEncoding.Proto) => new(_fixture.Agent.Http, encoding);

    internal static StartRequest OnTerminal(string script, uint cols, uint rows) => new()
    {
        Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", script } },
        Pty = new PTY { Size = new PTY.Types.Size { Cols = cols, Rows = rows } },
    };

    [Theory]
    [InlineData(ConnectEncoding.Proto)]
    [InlineData(ConnectEncoding.Json)]
    public async Task A_terminal_has_the_requested_size_takes_input_and_resizes(ConnectEncoding encoding)
    {
        using var cts = Calls.Timeout();
        var client = Client(encoding);
        await using var run = await ProcessRun.StartAsync(client, OnTerminal("stty size; read line; echo \"line=$line\"; stty size", 80, 24), cts.Token);
        await run.WaitForOutputAsync(o => o.Contains("24 80\r\n", StringComparison.Ordinal), cts.Token, terminal: true);

        await client.UnaryAsync<UpdateRequest, UpdateResponse>("/process.Process/Update",
            new UpdateRequest { Process = Calls.Pid(run.Pid), Pty = new PTY { Size = new PTY.Types.Size { Cols = 132, Rows = 40 } } }, cts.Token);
        await client.SendPtyAsync(run.Pid, "typed\n", cts.Token);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal(0, end.ExitCode);
        Assert.Contains("typed\r\n", run.PtyText, StringComparison.Ordinal); // echoed by the terminal
        Assert.Contains("line=typed\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.EndsWith("40 132\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.Equal(0, run.Stdout.Length);
    }

    [Fact]
    public async Task The_terminal_is_the_controlling_terminal_and_TERM_is_set()
    {
        using var cts = Calls.Timeout();
        // /dev/tty opens only through a controlling terminal (ENXIO without one).
        await using var run = await ProcessRun.StartAsync(Client(), OnTerminal("stty size < /dev/tty && echo \"term=$TERM\"", 100, 30), cts.Token);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal(0, end.ExitCode);
        Assert.Contains("30 100\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.Contains("term=xterm-256color", run.PtyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Terminal_input_via_StreamInput_reaches_an_interactive_shell()
    {
        using var cts = Calls.Timeout();
        var request = new StartRequest
        {
            // --norc: root's ~/.bashrc on the build machines runs slow tooling (pyenv) that is no part of this test.
            Process = new ProcessConfig { Cmd = "/bin/bash", Args = { "--norc", "-i" }, Envs = { ["PS1"] = "$ " } },
            Pty = new PTY { Size = new PTY.Types.Size { Cols = 80, Rows = 24 } },
        };
        await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token);

        async IAsyncEnumerable<StreamInputRequest> Input()
        {
            yield return new StreamInputRequest { Start = new StreamInputRequest.Types.StartEvent { Process = Calls.Pid(run.Pid) } };
            foreach (var part in new[] { "echo $((6", "*7))\n", "exit 5\n" })
            {
                yield return new StreamInputRequest { Data = new StreamInputRequest.Types.DataEvent { Input = new ProcessInput { Pty = Google.Protobuf.ByteString.CopyFromUtf8(part) } } };
                await Task.Yield();
            }
        }

        await Client().ClientStreamAsync<StreamInputRequest, StreamInputResponse>("/process.Process/StreamInput", Input(), cts.Token);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Contains("42\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.Equal(5, end.ExitCode);
    }

    [Fact]
    public async Task Terminal_and_pipe_misuse_is_failed_precondition()
    {
        using var cts = Calls.Timeout();
        await using var terminal = await ProcessRun.StartAsync(Client(), OnTerminal("sleep 30", 80, 24), cts.Token);
        await using var piped = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 30", stdin: true), cts.Token);

        var closeTerminal = await Assert.ThrowsAsync<ConnectException>(() => Client().CloseStdinAsync(terminal.Pid, cts.Token));
        Assert.Equal(ConnectCode.FailedPrecondition, closeTerminal.Code);
        var stdinToTerminal = await Assert.ThrowsAsync<ConnectException>(() => Client().SendStdinAsync(terminal.Pid, "x", cts.Token));
        Assert.Equal(ConnectCode.FailedPrecondition, stdinToTerminal.Code);
        var ptyToPipe = await Assert.ThrowsAsync<ConnectException>(() => Client().SendPtyAsync(piped.Pid, "x", cts.Token));
        Assert.Equal(ConnectCode.FailedPrecondition, ptyToPipe.Code);
        var resizePipe = await Assert.ThrowsAsync<ConnectException>(() => Client().UnaryAsync<UpdateRequest, UpdateResponse>("/process.Process/Update",
            new UpdateRequest { Process = Calls.Pid(piped.Pid), Pty = new PTY { Size = new PTY.Types.Size { Cols = 80, Rows = 24 } } }, cts.Token));
        Assert.Equal(ConnectCode.FailedPrecondition, resizePipe.Code);

        await Client().SignalAsync(terminal.Pid, Signal.Sigkill, cts.Token);
        await Client().SignalAsync(piped.Pid, Signal.Sigkill, cts.Token);
        Assert.Equal("signal: killed", (await terminal.WaitEndAsync(cts.Token)).Status);
        Assert.Equal("signal: killed", (await piped.WaitEndAsync(cts.Token)).Status);
    }
}
