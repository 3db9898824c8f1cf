using System.Text;
using Paddock.Client.Commands;
using Paddock.Envd.Process;

namespace Paddock.Client;

/// <summary>
/// A command running in the sandbox. Output is received from the moment the handle exists: it is collected
/// (<see cref="Stdout"/>, <see cref="Stderr"/>), passed to the callbacks, and can be iterated with
/// <see cref="ReadOutputAsync"/>. Disposing the handle detaches from the command; it keeps running.
/// </summary>
public sealed class CommandHandle : IAsyncDisposable
{
    private readonly SandboxCommands _commands;
    private readonly ProcessEventStream _events;
    private readonly Action<string>? _onStdout;
    private readonly Action<string>? _onStderr;
    private readonly OutputLog _log = new();
    private readonly Decoder _stdoutDecoder = Encoding.UTF8.GetDecoder();
    private readonly Decoder _stderrDecoder = Encoding.UTF8.GetDecoder();
    private readonly Task _pump;
    private CommandResult? _result;
    private Exception? _failure;
    private volatile bool _disconnected;

    internal CommandHandle(SandboxCommands commands, ProcessEventStream events, Action<string>? onStdout, Action<string>? onStderr)
    {
        _commands = commands;
        _events = events;
        _onStdout = onStdout;
        _onStderr = onStderr;
        Pid = events.Pid;
        _pump = Task.Run(PumpAsync);
    }

    /// <summary>The process id inside the sandbox.</summary>
    public int Pid { get; }

    /// <summary>Standard output received so far.</summary>
    public string Stdout => _log.Text(OutputStream.Stdout);

    /// <summary>Standard error received so far.</summary>
    public string Stderr => _log.Text(OutputStream.Stderr);

    /// <summary>The exit code once the command has finished; null while it runs.</summary>
    public int? ExitCode => _result?.ExitCode;

    /// <summary>
    /// Waits for the command to finish. Throws <see cref="CommandExitException"/> (holding the result) when it exits
    /// with a non-zero code, <see cref="SandboxTimeoutException"/> when it ran past its timeout. Cancelling
    /// <paramref name="cancellationToken"/> stops the wait, not the command.
    /// </summary>
    public async Task<CommandResult> WaitAsync(CancellationToken cancellationToken = default)
    {
        await _pump.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (_failure is not null)
        {
            throw _failure;
        }
        var result = _result ?? throw new SandboxException("the command's output stream ended without its result");
        if (result.ExitCode != 0)
        {
            throw new CommandExitException(result);
        }
        return result;
    }

    /// <summary>
    /// Every piece of output in order, from the start of the command, ending when the command ends. Throws what
    /// <see cref="WaitAsync"/> would throw when the stream failed (but not for a non-zero exit code).
    /// </summary>
    public IAsyncEnumerable<CommandOutput> ReadOutputAsync(CancellationToken cancellationToken = default) => _log.ReadAllAsync(cancellationToken);

    /// <summary>Writes text (UTF-8) to the command's stdin. The command must have been started with <see cref="CommandOptions.Stdin"/>.</summary>
    public Task SendStdinAsync(string data, CancellationToken cancellationToken = default) => _commands.SendStdinAsync(Pid, data, cancellationToken);

    /// <summary>Writes bytes to the command's stdin.</summary>
    public Task SendStdinAsync(ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) => _commands.SendStdinAsync(Pid, data, cancellationToken);

    /// <summary>Closes the command's stdin: it reads end-of-file.</summary>
    public Task CloseStdinAsync(CancellationToken cancellationToken = default) => _commands.CloseStdinAsync(Pid, cancellationToken);

    /// <summary>Kills the command with SIGKILL; false when it was not running any more.</summary>
    public Task<bool> KillAsync(CancellationToken cancellationToken = default) => _commands.KillAsync(Pid, cancellationToken);

    /// <summary>Stops receiving output; the command keeps running (attach again with <see cref="SandboxCommands.ConnectAsync"/>).</summary>
    public async ValueTask DisconnectAsync()
    {
        _disconnected = true;
        _events.Cancel();
        try
        {
            await _pump.ConfigureAwait(false);
        }
        finally
        {
            await _events.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Same as <see cref="DisconnectAsync"/>.</summary>
    public ValueTask DisposeAsync() => DisconnectAsync();

    private async Task PumpAsync()
    {
        Exception? failure = null;
        try
        {
            while (await _events.ReadAsync(CancellationToken.None).ConfigureAwait(false) is { } e)
            {
                switch (e.EventCase)
                {
                    case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout:
                        Deliver(OutputStream.Stdout, e.Data.Stdout.Memory, flush: false);
                        break;
                    case ProcessEvent.EventOneofCase.Data when e.Data.OutputCase == ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr:
                        Deliver(OutputStream.Stderr, e.Data.Stderr.Memory, flush: false);
                        break;
                    case ProcessEvent.EventOneofCase.End:
                        Deliver(OutputStream.Stdout, ReadOnlyMemory<byte>.Empty, flush: true);
                        Deliver(OutputStream.Stderr, ReadOnlyMemory<byte>.Empty, flush: true);
                        _result = new CommandResult
                        {
                            // envd sends exit_code -1 with exited=false for a process ended by a signal.
                            ExitCode = e.End.Exited ? e.End.ExitCode : (e.End.ExitCode != 0 ? e.End.ExitCode : -1),
                            Error = e.End.HasError && e.End.Error.Length > 0 ? e.End.Error : (!e.End.Exited && e.End.Status.Length > 0 ? e.End.Status : null),
                            Stdout = _log.Text(OutputStream.Stdout),
                            Stderr = _log.Text(OutputStream.Stderr),
                        };
                        break;
                    default:
                        break; // start, keepalive, and pty data (not expected on a command)
                }
            }
            if (_result is null)
            {
                failure = new SandboxException("the command's output stream ended without an end event");
            }
        }
        catch (OperationCanceledException) when (_disconnected)
        {
            failure = new SandboxException("the handle was disconnected from the command before it finished");
        }
        catch (Exception ex)
        {
            failure = ex;
        }
        _failure = failure;
        _log.Complete(failure);
        if (!_disconnected)
        {
            await _events.DisposeAsync().ConfigureAwait(false);
        }
    }

    private void Deliver(OutputStream stream, ReadOnlyMemory<byte> data, bool flush)
    {
        var decoder = stream == OutputStream.Stdout ? _stdoutDecoder : _stderrDecoder;
        var chars = new char[decoder.GetCharCount(data.Span, flush)];
        var count = decoder.GetChars(data.Span, chars, flush);
        if (count == 0 && data.IsEmpty)
        {
            return;
        }
        var text = new string(chars, 0, count);
        _log.Add(new CommandOutput(stream, text, data.ToArray()));
        if (text.Length > 0)
        {
            (stream == OutputStream.Stdout ? _onStdout : _onStderr)?.Invoke(text);
        }
    }
}
