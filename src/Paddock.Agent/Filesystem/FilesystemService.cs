using System.Threading.Channels;
using Paddock.Agent.Connect;
using Paddock.Agent.Native;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// E2B's <c>filesystem.Filesystem</c> service. Every call acts for the caller's user: relative paths start at that
/// user's home, and what a call creates belongs to that user. Like envd, the agent does not check the user's own
/// permissions (it runs as root in the sandbox, and the sandbox's users can use sudo); errors the agent itself
/// meets become permission_denied.
/// </summary>
internal sealed class FilesystemService
{
    private readonly EntryInfos _infos;
    private readonly WatcherRegistry _watchers;
    private readonly string? _defaultWorkdir;

    public FilesystemService(EntryInfos infos, WatcherRegistry watchers, string? defaultWorkdir)
    {
        _infos = infos;
        _watchers = watchers;
        _defaultWorkdir = defaultWorkdir;
    }

    public ValueTask<StatResponse> Stat(StatRequest request, ConnectCallContext context)
    {
        var path = Resolve(request.Path, context);
        return ValueTask.FromResult(new StatResponse { Entry = _infos.Read(path, "cannot stat") });
    }

    public ValueTask<MakeDirResponse> MakeDir(MakeDirRequest request, ConnectCallContext context)
    {
        const string action = "cannot make directory";
        var path = Resolve(request.Path, context);
        var errno = FileStatus.TryGet(path, followSymlinks: true, out var status);
        if (errno == 0)
        {
            throw status.IsDirectory
                ? new ConnectException(ConnectCode.AlreadyExists, $"{action}: directory '{PathResolver.Printable(path)}' already exists")
                : new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{PathResolver.Printable(path)}' exists and is not a directory");
        }
        if (errno != FileErrno.ENOENT)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
        if (!FileTree.MakeDirectories(path, context.User, action))
        {
            throw new ConnectException(ConnectCode.AlreadyExists, $"{action}: directory '{PathResolver.Printable(path)}' already exists");
        }
        return ValueTask.FromResult(new MakeDirResponse { Entry = _infos.Read(path, action) });
    }

    public ValueTask<MoveResponse> Move(MoveRequest request, ConnectCallContext context)
    {
        const string action = "cannot move";
        var source = Resolve(request.Source, context);
        var destination = Resolve(request.Destination, context);
        var errno = FileStatus.TryGet(source, followSymlinks: false, out _);
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, source, action);
        }
        if (source == "/" || destination == "/")
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"{action} '{PathResolver.Printable(source)}' to '{PathResolver.Printable(destination)}': the root directory cannot be moved or replaced");
        }
        FileTree.MakeDirectories(PathResolver.ParentOf(destination), context.User, action);
        errno = DirectoryEntries.TryRename(source, destination);
        if (errno != 0)
        {
            // Name the path the error is about: the source for its own absence, the destination for the rest.
            var subject = errno == FileErrno.ENOENT && FileStatus.TryGet(source, false, out _) != 0 ? source : destination;
            throw FsErrors.FromErrno(errno, subject, $"{action} '{PathResolver.Printable(source)}' to '{PathResolver.Printable(destination)}'");
        }
        return ValueTask.FromResult(new MoveResponse { Entry = _infos.Read(destination, action) });
    }

    public ValueTask<ListDirResponse> ListDir(ListDirRequest request, ConnectCallContext context)
    {
        const string action = "cannot list directory";
        var path = Resolve(request.Path, context);
        // Depth 0 is what a client that does not set the field sends; envd treats it as 1.
        var depth = request.Depth == 0 ? 1 : (int)Math.Min(request.Depth, 4096u);
        var directory = RequireDirectory(path, action);
        var response = new ListDirResponse();
        response.Entries.AddRange(FileTree.List(directory, path, depth, _infos, action, context.CancellationToken));
        return ValueTask.FromResult(response);
    }

    public ValueTask<RemoveResponse> Remove(RemoveRequest request, ConnectCallContext context)
    {
        const string action = "cannot remove";
        var path = Resolve(request.Path, context);
        if (path == "/")
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"{action} '/': refusing to remove the root directory");
        }
        FileTree.Remove(path, action, context.CancellationToken);
        return ValueTask.FromResult(new RemoveResponse());
    }

    public async Task WatchDir(WatchDirRequest request, IStreamWriter<WatchDirResponse> writer, ConnectCallContext context)
    {
        var root = Resolve(request.Path, context);
        using var watch = DirectoryWatch.Start(root, new WatchOptions { Recursive = request.Recursive, IncludeEntry = request.IncludeEntry, AllowNetworkMounts = request.AllowNetworkMounts }, _infos);
        var cancellationToken = context.CancellationToken;
        await writer.WriteAsync(new WatchDirResponse { Start = new WatchDirResponse.Types.StartEvent() }, cancellationToken);

        using var stopKeepAlive = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var keepAlive = KeepAliveAsync(writer, context.KeepAliveInterval, stopKeepAlive.Token);
        try
        {
            await foreach (var ev in watch.Events.ReadAllAsync(cancellationToken))
            {
                await writer.WriteAsync(new WatchDirResponse { Filesystem = ev }, cancellationToken);
            }
        }
        catch (ChannelClosedException ex) when (ex.InnerException is ConnectException error)
        {
            // The watch ended on its own (queue overflow, directory removed): the stream ends with its reason.
            throw error;
        }
        finally
        {
            await stopKeepAlive.CancelAsync();
            await keepAlive;
        }
    }

    public ValueTask<CreateWatcherResponse> CreateWatcher(CreateWatcherRequest request, ConnectCallContext context)
    {
        var root = Resolve(request.Path, context);
        var id = _watchers.Create(root, new WatchOptions { Recursive = request.Recursive, IncludeEntry = request.IncludeEntry, AllowNetworkMounts = request.AllowNetworkMounts }, _infos);
        return ValueTask.FromResult(new CreateWatcherResponse { WatcherId = id });
    }

    public ValueTask<GetWatcherEventsResponse> GetWatcherEvents(GetWatcherEventsRequest request, ConnectCallContext context)
    {
        var response = new GetWatcherEventsResponse();
        response.Events.AddRange(_watchers.Drain(request.WatcherId));
        return ValueTask.FromResult(response);
    }

    public ValueTask<RemoveWatcherResponse> RemoveWatcher(RemoveWatcherRequest request, ConnectCallContext context)
    {
        _watchers.Remove(request.WatcherId);
        return ValueTask.FromResult(new RemoveWatcherResponse());
    }

    private string Resolve(string path, ConnectCallContext context) => PathResolver.Resolve(path, context.User, _defaultWorkdir);

    /// <summary>The directory to read for <paramref name="path"/>: the path itself, or where it leads if it is a symlink.</summary>
    private static string RequireDirectory(string path, string action)
    {
        var errno = FileStatus.TryGet(path, followSymlinks: true, out var status);
        if (errno != 0)
        {
            throw FsErrors.FromErrno(errno, path, action);
        }
        if (!status.IsDirectory)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: '{PathResolver.Printable(path)}' is not a directory");
        }
        return DirectoryEntries.TryRealPath(path, out _) ?? path;
    }

    private static async Task KeepAliveAsync(IStreamWriter<WatchDirResponse> writer, TimeSpan interval, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                await writer.WriteAsync(new WatchDirResponse { Keepalive = new WatchDirResponse.Types.KeepAlive() }, cancellationToken);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // The stream ended (or the client left): no more keepalives to send.
        }
    }
}
