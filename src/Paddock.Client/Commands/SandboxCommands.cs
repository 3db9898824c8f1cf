using System.Text;
using Google.Protobuf;
using Paddock.Client.Commands;
using Paddock.Client.Envd;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Client;

/// <summary>
/// Runs commands in the sandbox (<c>sandbox.Commands</c>): each command is <c>/bin/bash -l -c CMD</c>, as in
/// E2B's SDKs, started through envd's <c>process.Process</c> service.
/// </summary>
public sealed class SandboxCommands
{
    private const string Service = "process.Process/";
    private readonly EnvdClient _envd;

    internal SandboxCommands(EnvdClient envd)
    {
        _envd = envd;
    }

    /// <summary>
    /// Runs a command and waits for it to finish. Throws <see cref="CommandExitException"/> (holding the result)
    /// when it exits with a non-zero code. Cancelling <paramref name="cancellationToken"/> kills the command.
    /// </summary>
    public async Task<CommandResult> RunAsync(string cmd, CommandOptions? options = null, CancellationToken cancellationToken = default)
    {
        await using var handle = await StartAsync(cmd, options, cancellationToken).ConfigureAwait(false);
        try
        {
            return await handle.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // The caller gave up on a foreground command: do not leave it running unseen.
            using var kill = new CancellationTokenSource(_envd.Connection.RequestTimeout == Timeout.InfiniteTimeSpan ? TimeSpan.FromSeconds(30) : _envd.Connection.RequestTimeout);
            try
            {
                await KillAsync(handle.Pid, kill.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is SandboxException or TimeoutException or OperationCanceledException)
            {
                // Best effort: the cancellation is what the caller asked about, and the sandbox may be gone.
            }
            throw;
        }
    }

    /// <summary>
    /// Starts a command in the background and returns once the sandbox reports it started. Use the handle to wait,
    /// stream its output, write to its stdin, or kill it.
    /// </summary>
    public async Task<CommandHandle> StartAsync(string cmd, CommandOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(cmd);
        options ??= new CommandOptions();
        var config = new ProcessConfig { Cmd = "/bin/bash" };
        config.Args.Add("-l");
        config.Args.Add("-c");
        config.Args.Add(cmd);
        if (options.Cwd is { } cwd)
        {
            config.Cwd = cwd;
        }
        if (options.Envs is { } envs)
        {
            config.Envs.Add(envs.ToDictionary());
        }
        var request = new StartRequest { Process = config, Stdin = options.Stdin };
        var call = new CallOptions(_envd.RequestTimeout(options.RequestTimeout), options.User, ServerTimeout(options.Timeout), EnvdClient.KeepAliveSeconds);
        var events = await ProcessEventStream.OpenAsync(_envd, Service + "Start", request, StartResponse.Parser, r => r.Event, call, $"running '{Abbreviate(cmd)}'", cancellationToken).ConfigureAwait(false);
        return new CommandHandle(this, events, options.OnStdout, options.OnStderr);
    }

    /// <summary>Attaches to a running command (e.g. one started in the background earlier, or by another client).</summary>
    public async Task<CommandHandle> ConnectAsync(int pid, CommandConnectOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new CommandConnectOptions();
        var request = new ConnectRequest { Process = Selector(pid) };
        var call = new CallOptions(_envd.RequestTimeout(options.RequestTimeout), null, ServerTimeout(options.Timeout), EnvdClient.KeepAliveSeconds);
        var events = await ProcessEventStream.OpenAsync(_envd, Service + "Connect", request, ConnectResponse.Parser, r => r.Event, call, $"attaching to process {pid}", cancellationToken).ConfigureAwait(false);
        return new CommandHandle(this, events, options.OnStdout, options.OnStderr);
    }

    /// <summary>The commands and terminals running in the sandbox.</summary>
    public async Task<IReadOnlyList<ProcessInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var response = await _envd.UnaryAsync(Service + "List", new ListRequest(), ListResponse.Parser, null, null, "listing processes", cancellationToken).ConfigureAwait(false);
        return response.Processes.Select(p => new ProcessInfo
        {
            Pid = (int)p.Pid,
            Tag = p.HasTag ? p.Tag : null,
            Cmd = p.Config?.Cmd ?? "",
            Args = p.Config?.Args.ToArray() ?? [],
            Envs = p.Config?.Envs.ToDictionary() ?? [],
            Cwd = p.Config is { HasCwd: true } c ? c.Cwd : null,
        }).ToArray();
    }

    /// <summary>Kills a process with SIGKILL; false when no such process runs.</summary>
    public async Task<bool> KillAsync(int pid, CancellationToken cancellationToken = default)
    {
        try
        {
            await _envd.Rpc.UnaryAsync(Service + "SendSignal", new SendSignalRequest { Process = Selector(pid), Signal = Signal.Sigkill }, new CallOptions(_envd.Connection.RequestTimeout), SendSignalResponse.Parser, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (ConnectException ex) when (ex.Code == ConnectCode.NotFound)
        {
            return false;
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, _envd.SandboxId, $"killing process {pid}");
        }
    }

    /// <summary>Writes text (UTF-8) to a process's stdin.</summary>
    public Task SendStdinAsync(int pid, string data, CancellationToken cancellationToken = default) =>
        SendStdinAsync(pid, Encoding.UTF8.GetBytes(data), cancellationToken);

    /// <summary>Writes bytes to a process's stdin.</summary>
    public Task SendStdinAsync(int pid, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default) =>
        SendInputAsync(pid, new ProcessInput { Stdin = ByteString.CopyFrom(data.Span) }, "writing to the stdin of", cancellationToken);

    /// <summary>Closes a process's stdin: it reads end-of-file.</summary>
    public Task CloseStdinAsync(int pid, CancellationToken cancellationToken = default) =>
        _envd.UnaryAsync(Service + "CloseStdin", new CloseStdinRequest { Process = Selector(pid) }, CloseStdinResponse.Parser, null, null, $"closing the stdin of process {pid}", cancellationToken);

    internal Task SendInputAsync(int pid, ProcessInput input, string what, CancellationToken cancellationToken) =>
        _envd.UnaryAsync(Service + "SendInput", new SendInputRequest { Process = Selector(pid), Input = input }, SendInputResponse.Parser, null, null, $"{what} process {pid}", cancellationToken);

    internal static ProcessSelector Selector(int pid) => new() { Pid = checked((uint)pid) };

    /// <summary>The <c>Connect-Timeout-Ms</c> to send: the default when unset, none for zero or infinite.</summary>
    internal static TimeSpan? ServerTimeout(TimeSpan? timeout)
    {
        var t = timeout ?? CommandOptions.DefaultTimeout;
        return t == TimeSpan.Zero || t == Timeout.InfiniteTimeSpan ? null : t;
    }

    private static string Abbreviate(string cmd) => cmd.Length <= 60 ? cmd : cmd[..57] + "...";
}
