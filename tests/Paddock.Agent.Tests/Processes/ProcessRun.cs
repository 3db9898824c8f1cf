using System.Text;
using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>One client's view of a process: the events of a Start or Connect stream, recorded as they are read.</summary>
internal sealed class ProcessRun : IAsyncDisposable
{
    private readonly Func<CancellationToken, Task<ProcessEvent?>> _next;
    private readonly IAsyncDisposable _stream;

    private ProcessRun(IAsyncDisposable stream, Func<CancellationToken, Task<ProcessEvent?>> next)
    {
        _stream = stream;
        _next = next;
    }

    public uint Pid { get; private set; }

    public MemoryStream Stdout { get; } = new();

    public MemoryStream Stderr { get; } = new();

    public MemoryStream Pty { get; } = new();

    public ProcessEvent.Types.EndEvent? End { get; private set; }

    public int KeepAlives { get; private set; }

    public string StdoutText => Encoding.UTF8.GetString(Stdout.ToArray());

    public string StderrText => Encoding.UTF8.GetString(Stderr.ToArray());

    public string PtyText => Encoding.UTF8.GetString(Pty.ToArray());

    public static Task<ProcessRun> StartAsync(ConnectClient client, StartRequest request, CancellationToken cancellationToken, ConnectCallOptions? options = null) =>
        OpenAsync<StartRequest, StartResponse>(client, "/process.Process/Start", request, r => r.Event, cancellationToken, options);

    public static Task<ProcessRun> ConnectAsync(ConnectClient client, ProcessSelector selector, CancellationToken cancellationToken, ConnectCallOptions? options = null) =>
        OpenAsync<ConnectRequest, ConnectResponse>(client, "/process.Process/Connect", new ConnectRequest { Process = selector }, r => r.Event, cancellationToken, options);

    private static async Task<ProcessRun> OpenAsync<TRequest, TResponse>(ConnectClient client, string path, TRequest request, Func<TResponse, ProcessEvent> select, CancellationToken cancellationToken, ConnectCallOptions? options)
        where TRequest : Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>, new()
    {
        var stream = await client.ServerStreamAsync<TRequest, TResponse>(path, request, cancellationToken, options);
        var run = new ProcessRun(stream, async ct => await stream.ReadAsync(ct) is { } r ? select(r) : null);
        try
        {
            var first = await run._next(cancellationToken) ?? throw new InvalidOperationException("the stream ended before its start event");
            Assert.Equal(ProcessEvent.EventOneofCase.Start, first.EventCase);
            run.Pid = first.Start.Pid;
            return run;
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
    }

    /// <summary>Reads one event; false once the stream has ended.</summary>
    public async Task<bool> NextAsync(CancellationToken cancellationToken)
    {
        if (End is not null)
        {
            Assert.Null(await _next(cancellationToken)); // nothing may follow the end event
            return false;
        }
        var e = await _next(cancellationToken);
        if (e is null)
        {
            return false;
        }
        switch (e.EventCase)
        {
            case ProcessEvent.EventOneofCase.Data:
                var target = e.Data.OutputCase switch
                {
                    ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout => (Stdout, e.Data.Stdout),
                    ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr => (Stderr, e.Data.Stderr),
                    _ => (Pty, e.Data.Pty),
                };
                target.Item1.Write(target.Item2.Span);
                break;
            case ProcessEvent.EventOneofCase.End:
                End = e.End;
                break;
            case ProcessEvent.EventOneofCase.Keepalive:
                KeepAlives++;
                break;
            default:
                throw new InvalidOperationException($"unexpected event {e.EventCase} after the start event");
        }
        return true;
    }

    /// <summary>Reads to the end of the stream and returns the end event.</summary>
    public async Task<ProcessEvent.Types.EndEvent> WaitEndAsync(CancellationToken cancellationToken)
    {
        while (await NextAsync(cancellationToken))
        {
        }
        return End ?? throw new InvalidOperationException("the stream ended without an end event");
    }

    /// <summary>Reads until the recorded stdout (or terminal output) satisfies <paramref name="done"/>.</summary>
    public async Task WaitForOutputAsync(Func<string, bool> done, CancellationToken cancellationToken, bool terminal = false)
    {
        while (!done(terminal ? PtyText : StdoutText))
        {
            if (!await NextAsync(cancellationToken))
            {
                throw new InvalidOperationException($"the stream ended before the expected output; got: {(terminal ? PtyText : StdoutText)}");
            }
        }
    }

    public ValueTask DisposeAsync() => _stream.DisposeAsync();
}
