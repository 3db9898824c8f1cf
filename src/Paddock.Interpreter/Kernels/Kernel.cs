using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Paddock.Interpreter.Jupyter;
using Paddock.Interpreter.Native;
using Paddock.Interpreter.ZeroMq;

namespace Paddock.Interpreter.Kernels;

/// <summary>
/// The kernel process ended while a request was waiting for its answer. <see cref="ErrorName"/> is the execution
/// error's name: <c>KernelDied</c>, or <c>ProcessLimitExceeded</c> when the watchdog killed it.
/// </summary>
internal sealed class KernelDiedException(string errorName, string message) : Exception(message)
{
    public string ErrorName { get; } = errorName;
}

/// <summary>
/// One running kernel process and its sockets. Requests are tracked by msg_id: every message whose parent is a
/// request goes to that request's channel, in arrival order; messages for no tracked request are dropped. When the
/// process exits, every open request fails with <see cref="KernelDiedException"/>.
/// </summary>
internal sealed class Kernel : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>RLIMIT_NPROC of kernels and the watchdog's limits (<c>PADDOCK_INTERP_MAX_PROCS</c>).</summary>
    public static ProcessLimits Limits { get; } = ProcessLimits.FromEnvironment(SandboxMemory.Read());

    private readonly ConcurrentDictionary<string, Channel<JupyterMessage>> _requests = new(StringComparer.Ordinal);
    private readonly Process _process;
    private KernelChannels? _channels;
    private readonly MessageSigner _signer;
    private readonly string _session = JupyterMessage.NewId();
    private readonly string _connectionFile;
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Queue<string> _stderrTail = new();
    private readonly ILogger _logger;
    private ProcessWatchdog? _watchdog;
    private volatile string? _killReason;
    private readonly int _pid;
    private int _disposed;

    private Kernel(Process process, MessageSigner signer, string connectionFile, ILogger logger)
    {
        _process = process;
        // Kept: Process.Id throws once the Process is disposed, and a disposed kernel is still asked (its messages).
        _pid = process.Id;
        _signer = signer;
        _connectionFile = connectionFile;
        _logger = logger;
    }

    public int Pid => _pid;

    /// <summary>Completes when the kernel process has exited (for whatever reason).</summary>
    public Task Exited => _exited.Task;

    public bool HasExited => _exited.Task.IsCompleted;

    /// <summary>The kernel's exit, in words ("exit code 1", "killed by signal 9"), once it has exited.</summary>
    public string ExitDescription { get; private set; } = "";

    /// <summary>Why the watchdog killed this kernel (its process limit), or null when it did not.</summary>
    public string? KillReason => _killReason;

    /// <summary>A cell starts: the watchdog counts the session's processes until it ends (and after, see there).</summary>
    public void CellStarted() => _watchdog?.CellStarted();

    public void CellEnded() => _watchdog?.CellEnded();

    /// <summary>
    /// Starts the kernel of <paramref name="spec"/> in <paramref name="cwd"/>, in a session of its own (setsid: so
    /// that a kill reaches what the cell forked), and waits until it answers kernel_info_request with its iopub
    /// subscription in place (jupyter_client's wait_for_ready does the same: iopub drops what is published before
    /// the subscriber is connected).
    /// </summary>
    public static async Task<Kernel> StartAsync(KernelSpec spec, string cwd, string runtimeDirectory, ILogger logger, CancellationToken cancellationToken)
    {
        var signer = MessageSigner.NewRandom();
        var info = KernelConnectionInfo.WithFreePorts(signer.KeyText);
        Directory.CreateDirectory(runtimeDirectory);
        var connectionFile = Path.Combine(runtimeDirectory, $"kernel-{JupyterMessage.NewId()[..12]}.json");
        info.Write(connectionFile);

        var start = new ProcessStartInfo("setsid")
        {
            WorkingDirectory = cwd,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var nproc = Limits.KernelRlimit(spec.Language == "bash", SessionCensus.UserTasks);
        if (nproc > 0 && File.Exists("/usr/bin/prlimit"))
        {
            // A cap on the tasks of the kernel's user (RLIMIT_NPROC, for the kernel and what it forks), below the
            // sandbox's pids limit (1024 by default), so that a fork bomb in a cell stalls while pids are left for
            // this server and the agent. Not enough on its own: the stalled bomb holds them until the watchdog
            // (ProcessWatchdog) kills the session.
            start.ArgumentList.Add("/usr/bin/prlimit");
            start.ArgumentList.Add($"--nproc={nproc}");
        }
        foreach (var arg in spec.Arguments)
        {
            start.ArgumentList.Add(arg.Replace("{connection_file}", connectionFile, StringComparison.Ordinal));
        }
        foreach (var (key, value) in spec.Environment)
        {
            start.Environment[key] = value;
        }
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        Kernel? kernel = null;
        process.Exited += (_, _) => kernel?.OnExited();
        if (!process.Start())
        {
            throw new IOException($"the {spec.Language} kernel did not start");
        }
        try
        {
            kernel = new Kernel(process, signer, connectionFile, logger);
            kernel._channels = new KernelChannels(info, signer, kernel.Dispatch, problem => InterpreterLog.KernelProblem(logger, process.Id, problem));
            kernel.CaptureOutput();
            if (process.HasExited)
            {
                kernel.OnExited();
            }
            await kernel.WaitReadyAsync(cancellationToken);
            kernel._watchdog = new ProcessWatchdog(process.Id, Limits, kernel.OnProcessLimit);
            return kernel;
        }
        catch
        {
            if (kernel is not null)
            {
                await kernel.DisposeAsync();
            }
            else
            {
                KillGroup(process.Id);
            }
            throw;
        }
    }

    /// <summary>
    /// Sends a request and tracks what answers it until the returned handle is disposed. The handle's reader gets
    /// every message whose parent is this request (iopub and shell/control replies alike).
    /// </summary>
    public KernelRequest Send(KernelChannel channel, string msgType, byte[] content)
    {
        var msgId = JupyterMessage.NewId();
        var messages = Channel.CreateUnbounded<JupyterMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        _requests[msgId] = messages;
        if (HasExited)
        {
            messages.Writer.TryComplete(NewDiedException());
        }
        else
        {
            _channels!.Send(channel, JupyterMessage.Build(_signer, _session, msgId, msgType, content, DateTimeOffset.UtcNow));
        }
        return new KernelRequest(msgId, messages.Reader, () => _requests.TryRemove(msgId, out _));
    }

    /// <summary>SIGINT to the kernel process, as jupyter_client interrupts kernels whose interrupt_mode is "signal".</summary>
    public void Interrupt() => Libc.kill(_pid, Libc.SIGINT);

    public async ValueTask DisposeAsync()
    {
        // Idempotent: a context disposes a killed kernel on more than one path (interrupt, then restart).
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _watchdog?.Dispose();
        // The whole session, also when the kernel itself has exited: what its cells forked may live on.
        await KillSessionAsync();
        if (!HasExited)
        {
            // Bounded: SIGKILL cannot be ignored; the wait covers the exit's delivery.
            await Task.WhenAny(Exited, Task.Delay(TimeSpan.FromSeconds(5)));
        }
        _channels?.Dispose();
        _process.Dispose();
        try
        {
            File.Delete(_connectionFile);
        }
        catch (IOException)
        {
            // The runtime directory is temporary; a leftover file holds a key to a kernel that no longer exists.
        }
    }

    private static void KillGroup(int pid)
    {
        Libc.kill(-pid, Libc.SIGKILL);
        Libc.kill(pid, Libc.SIGKILL);
    }

    private async Task KillSessionAsync()
    {
        var alive = await SessionCensus.KillAllAsync(_pid, CancellationToken.None);
        if (alive > 0)
        {
            InterpreterLog.KernelProblem(_logger, _pid, $"{alive} processes of its session still alive after SIGKILL passes (in D state?)");
        }
    }

    /// <summary>
    /// The watchdog found the session over its limit: the reason is kept for the running cell's error (and the next
    /// cell's note when none was running), then the whole session is killed; the process's exit fails the cell.
    /// </summary>
    private void OnProcessLimit(WatchdogVerdict verdict) => _ = KillForLimitAsync(verdict);

    private async Task KillForLimitAsync(WatchdogVerdict verdict)
    {
        _killReason ??= verdict.Describe(Limits);
        InterpreterLog.ProcessLimitExceeded(_logger, _pid, verdict.Count.Processes, verdict.Count.Tasks, verdict.Memory?.AvailableBytes >> 20);
        await KillSessionAsync();
    }

    /// <summary>
    /// A census now; when the session is over its limits, the session is killed as the watchdog would and this
    /// returns true once the kernel has exited (bounded wait). Used when a cell failed: a fork bomb's own cell ends
    /// with BlockingIOError once RLIMIT_NPROC stops its forks, often before the watchdog's next census.
    /// </summary>
    public async Task<bool> EnforceLimitsAsync()
    {
        var count = Limits.Census(_pid);
        if (!Limits.Exceeded(count))
        {
            return false;
        }
        await KillForLimitAsync(new WatchdogVerdict(count, null));
        // Bounded: SIGKILL cannot be ignored; the wait covers the exit's delivery.
        await Task.WhenAny(Exited, Task.Delay(TimeSpan.FromSeconds(5)));
        return true;
    }

    private KernelDiedException NewDiedException() => _killReason is { } reason
        ? new KernelDiedException("ProcessLimitExceeded", $"{reason}: the kernel (pid {_pid}) and every process of its session were killed")
        : new KernelDiedException("KernelDied", DiedMessage());

    private async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(StartTimeout);
        // Bounded by the deadline; each attempt waits up to 250 ms for the iopub status of its kernel_info_request.
        while (true)
        {
            using var request = Send(KernelChannel.Shell, "kernel_info_request", "{}"u8.ToArray());
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token);
            attempt.CancelAfter(TimeSpan.FromMilliseconds(250));
            try
            {
                var sawIopub = false;
                var sawReply = false;
                while (!(sawIopub && sawReply))
                {
                    var message = await request.ReadAsync(attempt.Token);
                    sawIopub |= message.MsgType == "status";
                    sawReply |= message.MsgType == "kernel_info_reply";
                }
                return;
            }
            catch (OperationCanceledException) when (!deadline.IsCancellationRequested)
            {
                // Not up yet, or its iopub subscription not yet joined: ask again.
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new IOException($"the kernel did not answer within {StartTimeout.TotalSeconds:0} s{StderrSuffix()}");
            }
            catch (KernelDiedException ex)
            {
                throw new IOException(ex.Message);
            }
        }
    }

    private void Dispatch(JupyterMessage message)
    {
        if (message.ParentMsgId is { } parent && _requests.TryGetValue(parent, out var channel))
        {
            channel.Writer.TryWrite(message);
        }
    }

    private void CaptureOutput()
    {
        // The kernel's own stdout and stderr (start-up notes, a crash's traceback): the last lines are kept for the
        // message of a failed start or a death; cell output goes over iopub, not here.
        _process.OutputDataReceived += (_, e) => Remember(e.Data);
        _process.ErrorDataReceived += (_, e) => Remember(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _process.StandardInput.Close();
    }

    private void Remember(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_stderrTail)
        {
            _stderrTail.Enqueue(line);
            while (_stderrTail.Count > 20)
            {
                _stderrTail.Dequeue();
            }
        }
    }

    private string StderrSuffix()
    {
        lock (_stderrTail)
        {
            return _stderrTail.Count == 0 ? "" : "; its output ended with: " + string.Join(" | ", _stderrTail.TakeLast(5));
        }
    }

    private string DiedMessage() => $"the kernel (pid {_pid}) exited: {ExitDescription}{StderrSuffix()}";

    private void OnExited()
    {
        if (_exited.Task.IsCompleted)
        {
            return;
        }
        try
        {
            var code = _process.ExitCode;
            // .NET reports a death by signal N as 128 + N.
            ExitDescription = code > 128 ? $"killed by signal {code - 128}" : $"exit code {code}";
        }
        catch (InvalidOperationException)
        {
            ExitDescription = "exited";
        }
        InterpreterLog.KernelExited(_logger, _pid, ExitDescription);
        _exited.TrySetResult();
        var error = NewDiedException();
        foreach (var channel in _requests.Values)
        {
            channel.Writer.TryComplete(error);
        }
    }
}

/// <summary>A sent request: the messages that answer it, until disposed.</summary>
internal sealed class KernelRequest(string msgId, ChannelReader<JupyterMessage> messages, Action untrack) : IDisposable
{
    public string MsgId { get; } = msgId;

    /// <summary>
    /// The next message that answers this request. Throws <see cref="KernelDiedException"/> once the kernel has
    /// exited (the channel's own ChannelClosedException unwrapped) and OperationCanceledException on cancellation.
    /// </summary>
    public async ValueTask<JupyterMessage> ReadAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await messages.ReadAsync(cancellationToken);
        }
        catch (ChannelClosedException ex) when (ex.InnerException is KernelDiedException died)
        {
            throw died;
        }
    }

    public void Dispose() => untrack();
}
