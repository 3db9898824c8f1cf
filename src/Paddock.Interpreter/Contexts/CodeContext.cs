using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Paddock.Interpreter.Http;
using Paddock.Interpreter.Jupyter;
using Paddock.Interpreter.Kernels;
using Paddock.Interpreter.ZeroMq;

namespace Paddock.Interpreter.Contexts;

/// <summary>A context as the API shows it (E2B's Context model).</summary>
internal sealed record ContextInfo(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("language")] string Language,
    [property: JsonPropertyName("cwd")] string Cwd);

/// <summary>
/// One context: a kernel of one language in one working directory. Executions are serialized (one cell at a time,
/// in arrival order). A kernel that exits fails the running cell with a clear error and is started again, empty.
/// </summary>
internal sealed class CodeContext : IAsyncDisposable
{
    /// <summary>How long an interrupted cell may take to stop before its kernel is killed and started again.</summary>
    public static TimeSpan InterruptGrace { get; } = TimeSpan.FromSeconds(3);

    /// <summary>The longest a silent environment change may take (a busy kernel is interrupted first).</summary>
    private static readonly TimeSpan SilentTimeout = TimeSpan.FromSeconds(30);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly KernelSpec _spec;
    private readonly string _runtimeDirectory;
    private readonly IReadOnlyDictionary<string, string> _sandboxEnv;
    private readonly ILogger _logger;
    private Kernel? _kernel;
    private bool _disposed;

    public CodeContext(string id, KernelSpec spec, string cwd, string runtimeDirectory, IReadOnlyDictionary<string, string> sandboxEnv, ILogger logger)
    {
        Id = id;
        _spec = spec;
        Cwd = cwd;
        _runtimeDirectory = runtimeDirectory;
        _sandboxEnv = sandboxEnv;
        _logger = logger;
    }

    public string Id { get; }

    public string Language => _spec.Language;

    public string Cwd { get; }

    public ContextInfo Info => new(Id, Language, Cwd);

    /// <summary>Starts the kernel (the create of a context answers once it is ready).</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            await EnsureKernelAsync(cancellationToken);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Runs <paramref name="code"/> after the cells before it, writing the response lines to <paramref name="output"/>
    /// (completed at the end; the end marker is the caller's). When <paramref name="clientGone"/> fires mid-cell the
    /// kernel is interrupted, and killed and restarted if the cell does not stop within <see cref="InterruptGrace"/>,
    /// so the next cell runs at once.
    /// </summary>
    public async Task ExecuteAsync(string code, IReadOnlyDictionary<string, string>? envVars, ChannelWriter<byte[]> output, CancellationToken clientGone)
    {
        try
        {
            await _gate.WaitAsync(clientGone);
        }
        catch (OperationCanceledException)
        {
            output.TryComplete();
            return;
        }
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_kernel is { HasExited: true, KillReason: { } reason })
            {
                // Killed by its watchdog with no cell running (a bash cell's background fork bomb): said once, here.
                output.TryWrite(OutputLines.Stream("stderr",
                    $"paddock: this context's kernel was killed and started again, its variables and imports are gone: {reason}\n", DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture)));
            }
            Kernel kernel;
            try
            {
                kernel = await EnsureKernelAsync(clientGone);
            }
            catch (IOException ex)
            {
                output.TryWrite(OutputLines.Error("KernelStartError", $"the {Language} kernel of context {Id} could not be started: {ex.Message}", ""));
                return;
            }
            var setEnv = envVars is { Count: > 0 };
            if (setEnv && !await RunSilentAsync(kernel, EnvSnippets.Set(Language, envVars!)))
            {
                output.TryWrite(OutputLines.Error("EnvVarsError", "the call's environment variables could not be set in the kernel", ""));
                return;
            }
            await RunCellAsync(kernel, code, output, clientGone);
            if (setEnv && _kernel is { HasExited: false } still && still == kernel)
            {
                await RunSilentAsync(kernel, EnvSnippets.Reset(Language, envVars!.Keys, _sandboxEnv));
            }
        }
        catch (OperationCanceledException) when (clientGone.IsCancellationRequested)
        {
            // The client left before its cell started (waiting for the kernel to start): nothing ran.
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or KernelDiedException)
        {
            // The context was removed or its kernel went away between the checks above: said in the stream, not as
            // a broken response.
            output.TryWrite(OutputLines.Error("ContextError", $"context {Id}: {ex.Message}", ""));
        }
        finally
        {
            output.TryComplete();
            _gate.Release();
        }
    }

    /// <summary>Kills the kernel and starts a new one (E2B's restart: the context's state is gone, its id stays).</summary>
    public async Task RestartAsync(CancellationToken cancellationToken)
    {
        var old = Interlocked.Exchange(ref _kernel, null);
        if (old is not null)
        {
            // A cell still running fails at once with "the kernel exited" instead of waiting for the gate.
            await old.DisposeAsync();
        }
        await StartAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        var old = Interlocked.Exchange(ref _kernel, null);
        if (old is not null)
        {
            await old.DisposeAsync();
        }
    }

    private async Task<Kernel> EnsureKernelAsync(CancellationToken cancellationToken)
    {
        if (_kernel is { HasExited: false } running)
        {
            return running;
        }
        if (_kernel is { } dead)
        {
            InterpreterLog.Restarted(_logger, Id, dead.ExitDescription);
            await dead.DisposeAsync();
            _kernel = null;
        }
        var clock = Stopwatch.StartNew();
        var kernel = await Kernel.StartAsync(_spec, Cwd, _runtimeDirectory, _logger, cancellationToken);
        InterpreterLog.KernelReady(_logger, Id, Language, Cwd, kernel.Pid, clock.Elapsed.TotalMilliseconds);
        _kernel = kernel;
        return kernel;
    }

    /// <summary>Runs the cell; false when it failed, was interrupted or its kernel died.</summary>
    private async Task<bool> RunCellAsync(Kernel kernel, string code, ChannelWriter<byte[]> output, CancellationToken clientGone)
    {
        using var request = kernel.Send(KernelChannel.Shell, "execute_request", JupyterMessage.ExecuteRequestContent(code, silent: false));
        // The cell's error line waits for the cell's end (where IPython puts it anyway): a failed cell may be a fork
        // bomb stalled at RLIMIT_NPROC (BlockingIOError), which is then told as such instead.
        byte[]? errorLine = null;
        kernel.CellStarted();
        try
        {
            while (true)
            {
                var message = await request.ReadAsync(clientGone);
                var content = message.Content.RootElement;
                switch (message.MsgType)
                {
                    case "stream":
                        var name = content.GetProperty("name").GetString() == "stderr" ? "stderr" : "stdout";
                        output.TryWrite(OutputLines.Stream(name, content.GetProperty("text"), message.Date));
                        break;
                    case "execute_input":
                        if (content.TryGetProperty("execution_count", out var count) && count.TryGetInt32(out var n))
                        {
                            output.TryWrite(OutputLines.ExecutionCount(n));
                        }
                        break;
                    case "display_data":
                        output.TryWrite(OutputLines.Result(content.GetProperty("data"), isMainResult: false));
                        break;
                    case "execute_result":
                        output.TryWrite(OutputLines.Result(content.GetProperty("data"), isMainResult: true));
                        break;
                    case "error":
                        errorLine ??= ErrorLine(content);
                        break;
                    case "execute_reply":
                        var status = content.TryGetProperty("status", out var s) ? s.GetString() : null;
                        if (status == "error")
                        {
                            errorLine ??= ErrorLine(content);
                        }
                        else if (status == "aborted" || status == "abort")
                        {
                            output.TryWrite(OutputLines.Error("ExecutionAborted", "Execution was aborted", ""));
                        }
                        break;
                    case "status":
                        if (content.TryGetProperty("execution_state", out var state) && state.GetString() == "idle")
                        {
                            if (errorLine is null)
                            {
                                return true;
                            }
                            if (await kernel.EnforceLimitsAsync())
                            {
                                output.TryWrite(OutputLines.Error("ProcessLimitExceeded",
                                    $"{kernel.KillReason}: the kernel and every process of its session were killed. The context's kernel is being restarted: its variables and imports are gone.", ""));
                                await RestartDeadAsync(kernel);
                                return false;
                            }
                            output.TryWrite(errorLine);
                            return false;
                        }
                        break;
                }
            }
        }
        catch (KernelDiedException ex)
        {
            output.TryWrite(OutputLines.Error(ex.ErrorName,
                $"{ex.Message}. The context's kernel is being restarted: its variables and imports are gone.", ""));
            await RestartDeadAsync(kernel);
            return false;
        }
        catch (OperationCanceledException) when (clientGone.IsCancellationRequested)
        {
            await InterruptAsync(kernel, request);
            return false;
        }
        finally
        {
            kernel.CellEnded();
        }
    }

    /// <summary>
    /// E2B's server leaves a cell running when its client goes (its issue #213 added an interrupt); here the kernel
    /// gets SIGINT, and if the cell has not ended within the grace (a C loop that ignores it, a fork bomb) the kernel
    /// is killed with what it forked and started again, so the context's next cell does not wait.
    /// </summary>
    private async Task InterruptAsync(Kernel kernel, KernelRequest request)
    {
        kernel.Interrupt();
        using var grace = new CancellationTokenSource(InterruptGrace);
        try
        {
            while (true)
            {
                var message = await request.ReadAsync(grace.Token);
                if (message.MsgType == "status" && message.Content.RootElement.TryGetProperty("execution_state", out var state) && state.GetString() == "idle")
                {
                    InterpreterLog.Interrupted(_logger, Id, "the cell stopped");
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            InterpreterLog.Interrupted(_logger, Id, $"the cell did not stop within {InterruptGrace.TotalSeconds:0} s: kernel killed and restarted");
            await kernel.DisposeAsync();
            await RestartDeadAsync(kernel);
        }
        catch (KernelDiedException)
        {
            await RestartDeadAsync(kernel);
        }
    }

    /// <summary>Starts a new kernel in place of <paramref name="dead"/>; a failure is left for the next cell to report.</summary>
    private async Task RestartDeadAsync(Kernel dead)
    {
        try
        {
            if (_kernel == dead)
            {
                await dead.DisposeAsync();
                _kernel = null;
                await EnsureKernelAsync(CancellationToken.None);
            }
        }
        catch (IOException ex)
        {
            InterpreterLog.Restarted(_logger, Id, "the new kernel did not start: " + ex.Message);
        }
    }

    private async Task<bool> RunSilentAsync(Kernel kernel, string code)
    {
        if (code.Length == 0)
        {
            return true;
        }
        using var request = kernel.Send(KernelChannel.Shell, "execute_request", JupyterMessage.ExecuteRequestContent(code, silent: true));
        using var timeout = new CancellationTokenSource(SilentTimeout);
        var ok = true;
        try
        {
            while (true)
            {
                var message = await request.ReadAsync(timeout.Token);
                if (message.MsgType == "error")
                {
                    ok = false;
                }
                if (message.MsgType == "status" && message.Content.RootElement.TryGetProperty("execution_state", out var state) && state.GetString() == "idle")
                {
                    return ok;
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or KernelDiedException)
        {
            return false;
        }
    }

    private static byte[] ErrorLine(JsonElement content)
    {
        var name = content.TryGetProperty("ename", out var e) ? e.GetString() ?? "" : "";
        var value = content.TryGetProperty("evalue", out var v) ? v.GetString() ?? "" : "";
        var traceback = content.TryGetProperty("traceback", out var t) && t.ValueKind == JsonValueKind.Array
            ? string.Join('\n', t.EnumerateArray().Select(x => x.GetString()))
            : "";
        return OutputLines.Error(name, value, traceback);
    }
}
