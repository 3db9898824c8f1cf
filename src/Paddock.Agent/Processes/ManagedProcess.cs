using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Paddock.Agent.Native;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Processes;

/// <summary>
/// A process the agent started: its input, its output pumps, and its end. It lives on after the stream that
/// started it is gone, until it has exited and its output has been delivered.
/// </summary>
internal sealed class ManagedProcess
{
    /// <summary>
    /// Reads start at <see cref="SmallRead"/> (interactive output rarely fills it) and grow to <see cref="LargeRead"/>
    /// while each read fills its buffer, i.e. while output floods. Large reads make large data events: measured here
    /// streaming 2 GiB, the agent's and the client's CPU per byte fell five-fold from 64 KiB to 1 MiB events, since
    /// each event costs a flush, a send and a client wake-up whatever its size.
    /// </summary>
    internal const int SmallRead = 64 * 1024;

    /// <summary>The largest read, and so the largest data event; equal to the pipe size the spawner asks for.</summary>
    internal const int LargeRead = 1024 * 1024;

    /// <summary>
    /// While output floods, how much each read should let gather in the pipe before it is taken: half the pipe, so
    /// the writer rarely blocks. Each data event costs the agent and the client about the same whatever its size (a
    /// flush, a send, thread-pool wake-ups, a client wake-up), so the CPU per byte follows the event count: measured
    /// with bench/ (`head -c 512M /dev/zero` through Start, which writes 8 KiB at a time), reads that raced the writes
    /// made 20-270 KiB events, and the agent spent 2-14 ms of CPU per MiB.
    /// </summary>
    internal const int FloodGatherBytes = LargeRead / 2;

    /// <summary>
    /// The longest a flood's next read waits for <see cref="FloodGatherBytes"/> to gather. Output counts as a flood
    /// when a read follows the previous one within this time or finds output already waiting; a few milliseconds of
    /// delay are invisible to a reader of such output. The first read, output after a pause, and everything after
    /// the process exited are read at once.
    /// </summary>
    internal static readonly TimeSpan MaxFloodGather = TimeSpan.FromMilliseconds(4);

    /// <summary>
    /// After the process itself has exited, how long its output is still awaited to reach end of file. A background
    /// job it left behind may hold the pipe open indefinitely (`cmd &amp;` in `bash -c`); once this passes, what is
    /// buffered is taken and the stream ends. Ordinary processes reach end of file at once and never wait for it.
    /// </summary>
    internal static readonly TimeSpan ExitGrace = TimeSpan.FromMilliseconds(200);

    // What the grace drain may still take after EOF was abandoned: enough for any buffer, bounded against a writer that never stops.
    private const int MaxDrainBytes = 16 * 1024 * 1024;

    private readonly SemaphoreSlim _inputGate = new(1, 1);
    private readonly CancellationTokenSource _exitGrace = new();
    private readonly CancellationTokenSource _exitNow = new();
    private readonly TaskCompletionSource<ProcessEvent.Types.EndEvent> _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly OutputPoller _poller;
    private readonly ILogger _logger;
    private SpawnedProcess? _io;
    private Socket? _stdin;
    private volatile bool _exited;

    public ManagedProcess(ProcessConfig config, string? tag, bool terminal, OutputPoller poller, ILogger logger)
    {
        _poller = poller;
        Config = config;
        Tag = tag;
        IsTerminal = terminal;
        _logger = logger;
    }

    private static long s_sequence;

    public ProcessConfig Config { get; }

    /// <summary>Start order, to pick the newest of processes sharing a tag.</summary>
    public long Sequence { get; } = Interlocked.Increment(ref s_sequence);

    public string? Tag { get; }

    public bool IsTerminal { get; }

    public int Pid { get; private set; }

    /// <summary>Output from the moment of subscription.</summary>
    public OutputFanout Output { get; } = new();

    /// <summary>The reaped exit status (before all output may have been delivered).</summary>
    public Task<ExitStatus> Exited { get; private set; } = Task.FromResult(default(ExitStatus));

    /// <summary>The end event: completes after the exit and after all output was published.</summary>
    public Task<ProcessEvent.Types.EndEvent> Ended => _ended.Task;

    /// <summary>Takes over a spawned child's descriptors and starts pumping its output.</summary>
    public void Attach(SpawnedProcess spawned)
    {
        _io = spawned;
        Pid = spawned.Pid;
        Exited = spawned.Exit;
        _stdin = IsTerminal ? spawned.Terminal : spawned.Stdin;
        _ = RunAsync(spawned);
    }

    private async Task RunAsync(SpawnedProcess io)
    {
        Task[] pumps = IsTerminal
            ? [PumpAsync(io.Terminal!.SafeHandle, OutputKind.Pty)]
            : [PumpAsync(io.Stdout!, OutputKind.Stdout), PumpAsync(io.Stderr!, OutputKind.Stderr)];
        var status = await io.Exit;
        _exited = true;
        _exitNow.Cancel();
        _exitGrace.CancelAfter(ExitGrace);
        await Task.WhenAll(pumps);
        var end = status.ToEndEvent();
        ProcessLog.Ended(_logger, Pid, end.Status);
        _ended.TrySetResult(end);
        Output.Complete();

        await _inputGate.WaitAsync();
        try
        {
            _stdin = null;
            io.Dispose();
        }
        finally
        {
            _inputGate.Release();
        }
        _exitGrace.Dispose();
        _exitNow.Dispose();
    }

    private async Task PumpAsync(SafeHandle descriptor, OutputKind kind)
    {
        try
        {
            using var source = _poller.Add(descriptor);
            var size = SmallRead;
            long previousRead = 0;
            while (true)
            {
                var chunk = OutputChunk.Rent(kind, size);
                int n;
                bool waited;
                try
                {
                    (n, waited) = await source.ReadAsync(chunk.Buffer, _exitGrace.Token);
                }
                catch (OperationCanceledException)
                {
                    chunk.Release();
                    break;
                }
                catch
                {
                    chunk.Release();
                    throw;
                }
                if (n == 0)
                {
                    chunk.Release();
                    return;
                }
                var now = Stopwatch.GetTimestamp();
                var gathered = previousRead == 0 ? TimeSpan.MaxValue : Stopwatch.GetElapsedTime(previousRead, now);
                previousRead = now;
                var full = n == chunk.Buffer.Length;
                var flooding = gathered != TimeSpan.MaxValue && (!waited || gathered < MaxFloodGather);
                // Reads grow to the largest size while output floods, and fall back after a pause.
                size = full || flooding ? LargeRead : SmallRead;
                chunk.Length = n;
                // Completes once every attached client has been sent the chunk: until then output gathers in the pipe.
                await Output.PublishAsync(chunk);
                // Writes in quick succession: wait until the pipe holds about FloodGatherBytes at the rate this read
                // saw (at most MaxFloodGather), so one event carries many writes. At rates that gather that much in
                // under a millisecond (the timer's granularity) the send itself takes long enough, and a wait would
                // only cap the throughput: measured on an idle machine, a wait of at least 1 ms per event held
                // `head -c` at 450 MiB/s. The process's exit cuts the wait short.
                var wait = flooding && !full && n < FloodGatherBytes && !_exited
                    ? Math.Min(gathered.TotalMilliseconds * (FloodGatherBytes - n) / n, MaxFloodGather.TotalMilliseconds)
                    : 0;
                if (wait >= 1)
                {
                    try
                    {
                        await Task.Delay(TimeSpan.FromMilliseconds(Math.Ceiling(wait)), _exitNow.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        // exited: read the rest at once
                    }
                }
            }

            // The grace after exit passed without end of file: take what is buffered now, then stop.
            var drained = 0;
            while (drained < MaxDrainBytes)
            {
                var chunk = OutputChunk.Rent(kind, LargeRead);
                var n = source.TryRead(chunk.Buffer.Span);
                if (n <= 0)
                {
                    chunk.Release();
                    break;
                }
                chunk.Length = n;
                drained += n;
                await Output.PublishAsync(chunk);
            }
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException)
        {
            ProcessLog.PumpEnded(_logger, Pid, kind.ToString(), ex.Message);
        }
        catch (Exception ex)
        {
            // A bug: the output stops, but the end event must still come and the process leave the table.
            ProcessLog.PumpFailed(_logger, Pid, kind.ToString(), ex);
        }
    }

    /// <summary>Writes input to the process's stdin pipe or terminal, in order with other input.</summary>
    public async Task WriteInputAsync(ProcessInput input, CancellationToken cancellationToken)
    {
        var (data, toTerminal) = input.InputCase switch
        {
            ProcessInput.InputOneofCase.Stdin => (input.Stdin.Memory, false),
            ProcessInput.InputOneofCase.Pty => (input.Pty.Memory, true),
            _ => throw new ConnectException(ConnectCode.InvalidArgument, "the input carries neither stdin nor pty bytes"),
        };
        if (toTerminal != IsTerminal)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, IsTerminal
                ? $"process {Pid} runs on a terminal: send its input as pty bytes"
                : $"process {Pid} has no terminal: send its input as stdin bytes");
        }
        if (data.IsEmpty)
        {
            return;
        }
        await _inputGate.WaitAsync(cancellationToken);
        try
        {
            var target = _stdin ?? throw new ConnectException(ConnectCode.FailedPrecondition, _exited
                ? $"process {Pid} has exited"
                : $"stdin of process {Pid} is not open: it was started without stdin or stdin was closed");
            while (!data.IsEmpty)
            {
                var n = await target.SendAsync(data, SocketFlags.None, cancellationToken);
                data = data[n..];
            }
        }
        catch (SocketException ex)
        {
            // EPIPE: nothing reads the pipe any more (the process exited or closed it), a normal end of input.
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} no longer reads its input: {ex.Message}");
        }
        catch (ObjectDisposedException)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} has exited");
        }
        finally
        {
            _inputGate.Release();
        }
    }

    /// <summary>Closes the stdin pipe (EOF for the process). Idempotent; a terminal has no such thing.</summary>
    public async Task CloseStdinAsync(CancellationToken cancellationToken)
    {
        if (IsTerminal)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} runs on a terminal, whose input cannot be closed: send ^D (0x04) instead");
        }
        await _inputGate.WaitAsync(cancellationToken);
        try
        {
            _stdin?.Dispose();
            _stdin = null;
        }
        finally
        {
            _inputGate.Release();
        }
    }

    /// <summary>
    /// Signals the process's whole process group (its pid: every process is started as a session leader), so a
    /// shell's children die with it. Once the process was reaped nothing is sent: its group id could be reused.
    /// </summary>
    public void Signal(int signal)
    {
        if (_exited)
        {
            return;
        }
        var rc = Signals.Send(-Pid, signal);
        if (rc == Errno.ESRCH)
        {
            _ = Signals.Send(Pid, signal);
        }
    }

    /// <summary>Resizes the terminal (TIOCSWINSZ; the foreground job gets SIGWINCH).</summary>
    public void Resize(uint cols, uint rows)
    {
        if (!IsTerminal)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} has no terminal to resize");
        }
        if (cols > ushort.MaxValue || rows > ushort.MaxValue)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"terminal size {cols}x{rows} is out of range (at most 65535x65535)");
        }
        var master = _io?.Terminal;
        if (master is null || _exited)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} has exited");
        }
        try
        {
            var rc = Pty.SetSize(master.SafeHandle, (ushort)cols, (ushort)rows);
            if (rc != 0)
            {
                throw new ConnectException(ConnectCode.Internal, $"cannot resize the terminal of process {Pid}: {Errno.Message(rc)}");
            }
        }
        catch (ObjectDisposedException)
        {
            throw new ConnectException(ConnectCode.FailedPrecondition, $"process {Pid} has exited");
        }
    }
}
