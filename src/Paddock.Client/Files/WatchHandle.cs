using System.Runtime.CompilerServices;
using Paddock.Client.Envd;
using Paddock.Envd.Connect;
using FsProto = Paddock.Envd.Filesystem;

namespace Paddock.Client;

/// <summary>
/// A directory watch. Iterate it (once) for the changes; the iteration ends when the watch's timeout passes
/// (with <see cref="SandboxTimeoutException"/>) or the handle is disposed (it then just ends).
/// </summary>
public sealed class WatchHandle : IAsyncEnumerable<FilesystemEvent>, IAsyncDisposable
{
    private readonly ServerStream<FsProto.WatchDirResponse> _stream;
    private readonly string _sandboxId;
    private readonly string _path;
    private volatile bool _stopped;
    private int _enumerated;

    internal WatchHandle(ServerStream<FsProto.WatchDirResponse> stream, string sandboxId, string path)
    {
        _stream = stream;
        _sandboxId = sandboxId;
        _path = path;
    }

    /// <summary>The changes, as they happen. A handle can be iterated once.</summary>
    public IAsyncEnumerator<FilesystemEvent> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _enumerated, 1) != 0)
        {
            throw new InvalidOperationException("a watch can be iterated once");
        }
        return Events(cancellationToken).GetAsyncEnumerator(cancellationToken);
    }

    private async IAsyncEnumerable<FilesystemEvent> Events([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        while (true)
        {
            FsProto.WatchDirResponse? response;
            try
            {
                response = await _stream.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_stopped)
            {
                yield break;
            }
            catch (ConnectException ex)
            {
                throw EnvdErrors.From(ex, _sandboxId, $"watching {_path}");
            }
            if (response is null)
            {
                yield break;
            }
            if (response.EventCase != FsProto.WatchDirResponse.EventOneofCase.Filesystem)
            {
                continue; // keepalive
            }
            FilesystemEventType? type = response.Filesystem.Type switch
            {
                FsProto.EventType.Create => FilesystemEventType.Create,
                FsProto.EventType.Write => FilesystemEventType.Write,
                FsProto.EventType.Remove => FilesystemEventType.Remove,
                FsProto.EventType.Rename => FilesystemEventType.Rename,
                FsProto.EventType.Chmod => FilesystemEventType.Chmod,
                _ => null,
            };
            if (type is { } t)
            {
                yield return new FilesystemEvent(response.Filesystem.Name, t);
            }
        }
    }

    /// <summary>Stops watching; a running iteration ends.</summary>
    public ValueTask DisposeAsync()
    {
        _stopped = true;
        return _stream.DisposeAsync();
    }
}
