using System.Threading.Channels;
using Google.Protobuf;
using Paddock.Client.Commands;
using Paddock.Client.Envd;
using Paddock.Envd.Process;

namespace Paddock.Client;

/// <summary>How to open a terminal.</summary>
public sealed record PtyOptions
{
    /// <summary>Columns of the terminal.</summary>
    public int Cols { get; init; } = 80;

    /// <summary>Rows of the terminal.</summary>
    public int Rows { get; init; } = 24;

    /// <summary>The account the shell runs as; default: the sandbox's default user.</summary>
    public string? User { get; init; }

    /// <summary>Environment variables; <c>TERM</c>, <c>LANG</c> and <c>LC_ALL</c> default to xterm-256color and C.UTF-8.</summary>
    public IReadOnlyDictionary<string, string>? Envs { get; init; }

    /// <summary>The working directory; default: the user's home.</summary>
    public string? Cwd { get; init; }

    /// <summary>How long the terminal may live; default 60 s as in E2B's SDKs; zero or infinite for no limit.</summary>
    public TimeSpan? Timeout { get; init; }

    /// <summary>The limit for opening the terminal (the request timeout); default: the connection's.</summary>
    public TimeSpan? RequestTimeout { get; init; }
}

/// <summary>
/// Interactive terminals in the sandbox (<c>sandbox.Pty</c>): <c>/bin/bash -i -l</c> on a pseudo-terminal,
/// driven by bytes in and bytes out.
/// </summary>
public sealed class Pty
{
    private const string Service = "process.Process/";
    private readonly EnvdClient _envd;
    private readonly SandboxCommands _commands;

    internal Pty(EnvdClient envd, SandboxCommands commands)
    {
        _envd = envd;
        _commands = commands;
    }

    /// <summary>Opens a terminal running an interactive login shell.</summary>
    public async Task<PtyHandle> CreateAsync(PtyOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new PtyOptions();
        var config = new ProcessConfig { Cmd = "/bin/bash" };
        config.Args.Add("-i");
        config.Args.Add("-l");
        if (options.Envs is { } envs)
        {
            config.Envs.Add(envs.ToDictionary());
        }
        config.Envs.TryAdd("TERM", "xterm-256color");
        config.Envs.TryAdd("LANG", "C.UTF-8");
        config.Envs.TryAdd("LC_ALL", "C.UTF-8");
        if (options.Cwd is { } cwd)
        {
            config.Cwd = cwd;
        }
        var request = new StartRequest { Process = config, Pty = new PTY { Size = Size(options.Cols, options.Rows) } };
        var call = new CallOptions(_envd.RequestTimeout(options.RequestTimeout), options.User, SandboxCommands.ServerTimeout(options.Timeout), EnvdClient.KeepAliveSeconds);
        var events = await ProcessEventStream.OpenAsync(_envd, Service + "Start", request, StartResponse.Parser, r => r.Event, call, "opening a terminal", cancellationToken).ConfigureAwait(false);
        return new PtyHandle(this, events);
    }

    /// <summary>Attaches to a running terminal.</summary>
    public async Task<PtyHandle> ConnectAsync(int pid, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        var call = new CallOptions(_envd.Connection.RequestTimeout, null, SandboxCommands.ServerTimeout(timeout), EnvdClient.KeepAliveSeconds);
        var events = await ProcessEventStream.OpenAsync(_envd, Service + "Connect", new ConnectRequest { Process = SandboxCommands.Selector(pid) }, ConnectResponse.Parser, r => r.Event, call, $"attaching to terminal {pid}", cancellationToken).ConfigureAwait(false);
        return new PtyHandle(this, events);
    }

    /// <summary>Sends keystrokes (bytes) to a terminal.</summary>
    public Task SendInputAsync(int pid, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        _commands.SendInputAsync(pid, new ProcessInput { Pty = ByteString.CopyFrom(data.Span) }, "typing into", cancellationToken);

    /// <summary>Changes a terminal's size (the shell gets SIGWINCH).</summary>
    public Task ResizeAsync(int pid, int cols, int rows, CancellationToken cancellationToken = default) =>
        _envd.UnaryAsync(Service + "Update", new UpdateRequest { Process = SandboxCommands.Selector(pid), Pty = new PTY { Size = Size(cols, rows) } }, UpdateResponse.Parser, null, null, $"resizing terminal {pid}", cancellationToken);

    /// <summary>Kills a terminal's shell with SIGKILL; false when it was not running.</summary>
    public Task<bool> KillAsync(int pid, CancellationToken cancellationToken = default) => _commands.KillAsync(pid, cancellationToken);

    private static PTY.Types.Size Size(int cols, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(cols, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        return new PTY.Types.Size { Cols = (uint)cols, Rows = (uint)rows };
    }
}

/// <summary>
/// A terminal in the sandbox. Read its output with <see cref="ReadOutputAsync"/> (one reader; the output is held
/// back, not dropped, while nobody reads), type with <see cref="SendInputAsync"/>. Disposing detaches; the shell keeps running.
/// </summary>
public sealed class PtyHandle : IAsyncDisposable
{
    // Bounded: a reader that falls behind slows the stream from the sandbox instead of growing memory without limit.
    private readonly Channel<ReadOnlyMemory<byte>> _output = Channel.CreateBounded<ReadOnlyMemory<byte>>(new BoundedChannelOptions(256) { SingleReader = true, SingleWriter = true });
    private readonly Pty _pty;
    private readonly ProcessEventStream _events;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task<CommandResult> _pump;
    private volatile bool _disconnected;

    internal PtyHandle(Pty pty, ProcessEventStream events)
    {
        _pty = pty;
        _events = events;
        Pid = events.Pid;
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>The shell's process id inside the sandbox.</summary>
    public int Pid { get; }

    /// <summary>The terminal's output as it arrives; ends when the shell exits.</summary>
    public IAsyncEnumerable<ReadOnlyMemory<byte>> ReadOutputAsync(CancellationToken cancellationToken = default) => _output.Reader.ReadAllAsync(cancellationToken);

    /// <summary>Sends keystrokes (bytes; e.g. 0x03 for Ctrl-C) to the terminal.</summary>
    public Task SendInputAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) => _pty.SendInputAsync(Pid, data, cancellationToken);

    /// <summary>Changes the terminal's size.</summary>
    public Task ResizeAsync(int cols, int rows, CancellationToken cancellationToken = default) => _pty.ResizeAsync(Pid, cols, rows, cancellationToken);

    /// <summary>Kills the shell; false when it was not running.</summary>
    public Task<bool> KillAsync(CancellationToken cancellationToken = default) => _pty.KillAsync(Pid, cancellationToken);

    /// <summary>
    /// Waits for the shell to exit and returns its exit code and error (the terminal's output is not collected:
    /// it went to the reader). A non-zero exit code is returned, not thrown: a shell's last command decides it.
    /// </summary>
    public Task<CommandResult> WaitAsync(CancellationToken cancellationToken = default) => _pump.WaitAsync(cancellationToken);

    /// <summary>Stops receiving output; the shell keeps running.</summary>
    public async ValueTask DisposeAsync()
    {
        _disconnected = true;
        _events.Cancel();
        _stop.Cancel();
        try
        {
            await _pump.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is SandboxException or TimeoutException or OperationCanceledException)
        {
            // Detaching: how the stream ended is of no interest any more.
        }
        await _events.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }

    private async Task<CommandResult> PumpAsync()
    {
        try
        {
            while (await _events.ReadAsync(CancellationToken.None).ConfigureAwait(false) is { } e)
            {
                if (e.EventCase == ProcessEvent.EventOneofCase.Data && e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Pty)
                {
                    await _output.Writer.WriteAsync(e.Data.Pty.Memory, _stop.Token).ConfigureAwait(false);
                }
                else if (e.EventCase == ProcessEvent.EventOneofCase.End)
                {
                    _output.Writer.TryComplete();
                    return new CommandResult
                    {
                        ExitCode = e.End.Exited ? e.End.ExitCode : (e.End.ExitCode != 0 ? e.End.ExitCode : -1),
                        Error = e.End.HasError && e.End.Error.Length > 0 ? e.End.Error : (!e.End.Exited && e.End.Status.Length > 0 ? e.End.Status : null),
                        Stdout = "",
                        Stderr = "",
                    };
                }
            }
            throw new SandboxException("the terminal's stream ended without an end event");
        }
        catch (OperationCanceledException ex) when (_disconnected)
        {
            var error = new SandboxException("the handle was disconnected from the terminal", ex);
            _output.Writer.TryComplete(error);
            throw error;
        }
        catch (Exception ex)
        {
            _output.Writer.TryComplete(ex);
            throw;
        }
    }
}
