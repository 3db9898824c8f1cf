using Google.Protobuf;
using Paddock.Client.Envd;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Client.Commands;

/// <summary>
/// The events of one process, from a <c>Start</c> or a <c>Connect</c> stream (they carry the same
/// <see cref="ProcessEvent"/>), with Connect errors already turned into the SDK's exceptions.
/// </summary>
internal sealed class ProcessEventStream : IAsyncDisposable
{
    private readonly Func<CancellationToken, ValueTask<ProcessEvent?>> _read;
    private readonly Action _cancel;
    private readonly Func<ValueTask> _dispose;
    private readonly string _sandboxId;
    private readonly string _what;

    private ProcessEventStream(Func<CancellationToken, ValueTask<ProcessEvent?>> read, Action cancel, Func<ValueTask> dispose, string sandboxId, string what)
    {
        _read = read;
        _cancel = cancel;
        _dispose = dispose;
        _sandboxId = sandboxId;
        _what = what;
    }

    public int Pid { get; private set; }

    /// <summary>Opens the stream and reads its first event, which must be the start event with the pid.</summary>
    public static async Task<ProcessEventStream> OpenAsync<TRequest, TResponse>(EnvdClient envd, string method, TRequest request, MessageParser<TResponse> parser, Func<TResponse, ProcessEvent?> eventOf, CallOptions call, string what, CancellationToken cancellationToken)
        where TRequest : IMessage<TRequest>
        where TResponse : IMessage<TResponse>
    {
        ServerStream<TResponse> stream;
        try
        {
            stream = await envd.Rpc.ServerStreamAsync(method, request, call, parser, cancellationToken).ConfigureAwait(false);
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, envd.SandboxId, what);
        }
        var events = new ProcessEventStream(
            async ct => await stream.ReadAsync(ct).ConfigureAwait(false) is { } m ? eventOf(m) ?? new ProcessEvent() : null,
            stream.Cancel,
            stream.DisposeAsync,
            envd.SandboxId,
            what);
        try
        {
            using var startDeadline = new CancellationTokenSource(call.RequestTimeout);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, startDeadline.Token);
            ProcessEvent? first;
            try
            {
                first = await events.ReadAsync(linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException ex) when (startDeadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                throw new SandboxTimeoutException($"{what}: the sandbox did not report the process start within {call.RequestTimeout.TotalSeconds:0.###} s", ex);
            }
            if (first is null || first.EventCase != ProcessEvent.EventOneofCase.Start)
            {
                throw new SandboxException($"{what}: the sandbox's first event was {(first is null ? "the end of the stream" : first.EventCase.ToString())}, not the process start");
            }
            events.Pid = checked((int)first.Start.Pid);
            return events;
        }
        catch
        {
            await events.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The next event; null at the end of the stream.</summary>
    public async ValueTask<ProcessEvent?> ReadAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _read(cancellationToken).ConfigureAwait(false);
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, _sandboxId, _what);
        }
    }

    public void Cancel() => _cancel();

    public ValueTask DisposeAsync() => _dispose();
}
