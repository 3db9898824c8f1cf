using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>WatchDir (the stream) and the polling watchers, against the real agent and real inotify.</summary>
public sealed class WatchTests : IClassFixture<SharedAgent>
{
    private static readonly TimeSpan EventTimeout = TimeSpan.FromSeconds(15);
    private readonly AgentProcess _agent;

    public WatchTests(SharedAgent shared)
    {
        _agent = shared.Agent;
    }

    private async Task<ServerStream<WatchDirResponse>> Watch(string path, bool recursive = false, bool includeEntry = false, bool json = true, int? keepAliveSeconds = null, bool allowNetworkMounts = false)
    {
        var stream = await new FsConnectClient(_agent.Http, json).StreamAsync<WatchDirResponse>(
            "WatchDir", new WatchDirRequest { Path = path, Recursive = recursive, IncludeEntry = includeEntry, AllowNetworkMounts = allowNetworkMounts }, keepAliveSeconds);
        try
        {
            var first = await stream.NextAsync(EventTimeout);
            Assert.NotNull(first);
            Assert.Equal(WatchDirResponse.EventOneofCase.Start, first.EventCase);
            return stream;
        }
        catch
        {
            await stream.DisposeAsync();
            throw;
        }
    }

    private static Func<WatchDirResponse, bool> Event(EventType type, string name) =>
        m => m.EventCase == WatchDirResponse.EventOneofCase.Filesystem && m.Filesystem.Type == type && m.Filesystem.Name == name;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Watch_reports_create_write_chmod_rename_and_remove_with_relative_names(bool json)
    {
        using var dir = new TempDir();
        await using var watch = await Watch(dir.Path, json: json);
        var seen = new List<WatchDirResponse>();

        await File.WriteAllTextAsync(dir["a.txt"], "one");
        await watch.WaitForAsync(Event(EventType.Create, "a.txt"), EventTimeout, seen);
        await watch.WaitForAsync(Event(EventType.Write, "a.txt"), EventTimeout, seen);

        SetMode(dir["a.txt"], UnixFileMode.UserRead | UnixFileMode.UserWrite);
        await watch.WaitForAsync(Event(EventType.Chmod, "a.txt"), EventTimeout, seen);

        File.Move(dir["a.txt"], dir["b.txt"]);
        await watch.WaitForAsync(Event(EventType.Rename, "a.txt"), EventTimeout, seen);
        await watch.WaitForAsync(Event(EventType.Create, "b.txt"), EventTimeout, seen);

        File.Delete(dir["b.txt"]);
        await watch.WaitForAsync(Event(EventType.Remove, "b.txt"), EventTimeout, seen);
        Assert.All(seen, m => Assert.False(m.Filesystem?.Entry is not null)); // include_entry was not asked for
    }

    [Fact]
    public async Task An_upload_shows_as_a_write_of_its_target_and_hides_its_temporary_file()
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["existing.txt"], "old");
        await using var watch = await Watch(dir.Path);
        var seen = new List<WatchDirResponse>();

        using (var content = new ByteArrayContent("new content"u8.ToArray()))
        {
            content.Headers.ContentType = new("application/octet-stream");
            using var response = await _agent.Http.PostAsync($"/files?path={Uri.EscapeDataString(dir["existing.txt"])}", content);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }
        await watch.WaitForAsync(Event(EventType.Write, "existing.txt"), EventTimeout, seen);

        using (var content = new ByteArrayContent("fresh"u8.ToArray()))
        {
            content.Headers.ContentType = new("application/octet-stream");
            using var response = await _agent.Http.PostAsync($"/files?path={Uri.EscapeDataString(dir["fresh.txt"])}", content);
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        }
        await watch.WaitForAsync(Event(EventType.Create, "fresh.txt"), EventTimeout, seen);
        await watch.WaitForAsync(Event(EventType.Write, "fresh.txt"), EventTimeout, seen);

        Assert.DoesNotContain(seen, m => m.Filesystem.Name.Contains("paddock-upload", StringComparison.Ordinal));
        Assert.DoesNotContain(seen, m => m.Filesystem.Name == "existing.txt" && m.Filesystem.Type == EventType.Create);
    }

    [Fact]
    public async Task A_recursive_watch_reports_nested_changes_and_watches_new_directories()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["nested"]);
        await using var watch = await Watch(dir.Path, recursive: true);
        var seen = new List<WatchDirResponse>();

        await File.WriteAllTextAsync(dir["nested/f.txt"], "x");
        await watch.WaitForAsync(Event(EventType.Write, "nested/f.txt"), EventTimeout, seen);

        Directory.CreateDirectory(dir["added"]);
        await watch.WaitForAsync(Event(EventType.Create, "added"), EventTimeout, seen);
        await File.WriteAllTextAsync(dir["added/g.txt"], "y");
        await watch.WaitForAsync(Event(EventType.Write, "added/g.txt"), EventTimeout, seen);

        // A directory moved within the tree keeps being watched under its new name.
        Directory.Move(dir["added"], dir["moved"]);
        await watch.WaitForAsync(Event(EventType.Create, "moved"), EventTimeout, seen);
        await File.WriteAllTextAsync(dir["moved/h.txt"], "z");
        await watch.WaitForAsync(Event(EventType.Write, "moved/h.txt"), EventTimeout, seen);

        // A tree made at once (mkdir -p, then a quick write) is reported whole, even the parts made before the
        // agent could add their watches: whichever way the race goes, the file shows as created and written.
        Directory.CreateDirectory(dir["p/q/r"]);
        await File.WriteAllTextAsync(dir["p/q/r/deep.txt"], "d");
        await watch.WaitForAsync(Event(EventType.Create, "p/q/r"), EventTimeout, seen);
        await watch.WaitForAsync(Event(EventType.Write, "p/q/r/deep.txt"), EventTimeout, seen);
    }

    [Fact]
    public async Task A_plain_watch_does_not_report_nested_changes()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["nested"]);
        await using var watch = await Watch(dir.Path, recursive: false);
        var seen = new List<WatchDirResponse>();
        await File.WriteAllTextAsync(dir["nested/f.txt"], "x");
        await File.WriteAllTextAsync(dir["marker.txt"], "m"); // written after: once it is seen, the nested event would have been too
        await watch.WaitForAsync(Event(EventType.Write, "marker.txt"), EventTimeout, seen);
        Assert.DoesNotContain(seen, m => m.Filesystem.Name.StartsWith("nested/", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Include_entry_attaches_the_entry_when_it_still_exists(bool json)
    {
        using var dir = new TempDir();
        await using var watch = await Watch(dir.Path, includeEntry: true, json: json);
        await File.WriteAllTextAsync(dir["e.txt"], "entry");
        var write = await watch.WaitForAsync(Event(EventType.Write, "e.txt"), EventTimeout);
        Assert.NotNull(write.Filesystem.Entry);
        Assert.Equal("e.txt", write.Filesystem.Entry.Name);
        Assert.Equal(dir["e.txt"], write.Filesystem.Entry.Path);
        Assert.Equal(FileType.File, write.Filesystem.Entry.Type);

        File.Delete(dir["e.txt"]);
        var remove = await watch.WaitForAsync(Event(EventType.Remove, "e.txt"), EventTimeout);
        Assert.Null(remove.Filesystem.Entry);
    }

    [Fact]
    public async Task Allowing_network_mounts_changes_nothing_for_a_local_directory()
    {
        using var dir = new TempDir();
        await using var watch = await Watch(dir.Path, allowNetworkMounts: true);
        await File.WriteAllTextAsync(dir["n.txt"], "x");
        await watch.WaitForAsync(Event(EventType.Write, "n.txt"), EventTimeout);
    }

    [Fact]
    public async Task Keepalives_arrive_at_the_clients_interval()
    {
        using var dir = new TempDir();
        await using var watch = await Watch(dir.Path, keepAliveSeconds: 1);
        await watch.WaitForAsync(m => m.EventCase == WatchDirResponse.EventOneofCase.Keepalive, EventTimeout);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Watching_a_missing_path_or_a_file_fails_clearly(bool json)
    {
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["file.txt"], "x");
        var client = new FsConnectClient(_agent.Http, json);

        await using (var missing = await client.StreamAsync<WatchDirResponse>("WatchDir", new WatchDirRequest { Path = dir["missing"] }))
        {
            (await ThrowsConnect(() => missing.NextAsync(EventTimeout))).Is(ConnectCode.NotFound, dir["missing"]);
        }
        await using (var file = await client.StreamAsync<WatchDirResponse>("WatchDir", new WatchDirRequest { Path = dir["file.txt"] }))
        {
            (await ThrowsConnect(() => file.NextAsync(EventTimeout))).Is(ConnectCode.InvalidArgument, dir["file.txt"]);
        }
        (await ThrowsConnect(() => client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir["missing"] }))).Is(ConnectCode.NotFound, dir["missing"]);
    }

    [Fact]
    public async Task The_stream_ends_with_not_found_when_the_watched_directory_is_removed()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["w"]);
        await using var watch = await Watch(dir["w"]);
        Directory.Delete(dir["w"]);
        var error = await ThrowsConnect(async () =>
        {
            for (var i = 0; i < 100; i++)
            {
                _ = await watch.NextAsync(EventTimeout);
            }
        });
        error.Is(ConnectCode.NotFound, dir["w"]);
    }

    [Fact]
    public async Task A_client_that_disconnects_frees_the_watchs_inotify_fd()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        var before = InotifyCount(agent.Pid);
        var stream = await new FsConnectClient(agent.Http, json: false).StreamAsync<WatchDirResponse>("WatchDir", new WatchDirRequest { Path = dir.Path, Recursive = true });
        Assert.Equal(WatchDirResponse.EventOneofCase.Start, (await stream.NextAsync(EventTimeout))!.EventCase);
        Assert.Equal(before + 1, InotifyCount(agent.Pid));

        await stream.DisposeAsync();
        await EventuallyAsync(() => InotifyCount(agent.Pid) == before, LongWait, () => $"{InotifyCount(agent.Pid)} inotify fds open, {before} before the watch");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Polling_watchers_queue_events_until_taken(bool json)
    {
        using var dir = new TempDir();
        var client = new FsConnectClient(_agent.Http, json);
        var id = (await client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir.Path, Recursive = true, IncludeEntry = true })).WatcherId;
        Assert.False(string.IsNullOrEmpty(id));
        try
        {
            Directory.CreateDirectory(dir["sub"]);
            await File.WriteAllTextAsync(dir["sub/p.txt"], "poll");
            var events = new List<FilesystemEvent>();
            await EventuallyAsync(
                async () =>
                {
                    events.AddRange((await client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = id })).Events);
                    return events.Any(e => e.Type == EventType.Write && e.Name == "sub/p.txt");
                },
                LongWait,
                () => string.Join(", ", events));
            Assert.Contains(events, e => e.Type == EventType.Create && e.Name == "sub");
            Assert.Equal(dir["sub/p.txt"], events.First(e => e.Name == "sub/p.txt" && e.Type == EventType.Write).Entry.Path);

            // Taking the events cleared the queue: none of them comes again (a write can still produce a late second
            // WRITE event, so the queue itself need not be empty).
            var again = (await client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = id })).Events;
            Assert.DoesNotContain(again, e => e.Type == EventType.Create && e.Name == "sub");
            Assert.All(again, e => Assert.Equal("sub/p.txt", e.Name));
        }
        finally
        {
            await client.CallAsync<RemoveWatcherResponse>("RemoveWatcher", new RemoveWatcherRequest { WatcherId = id });
        }
        (await ThrowsConnect(() => client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = id }))).Is(ConnectCode.NotFound, id);
        (await ThrowsConnect(() => client.CallAsync<RemoveWatcherResponse>("RemoveWatcher", new RemoveWatcherRequest { WatcherId = id }))).Is(ConnectCode.NotFound, id);
        (await ThrowsConnect(() => client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = "no-such-watcher" }))).Is(ConnectCode.NotFound, "no-such-watcher");
    }

    [Fact]
    public async Task A_polling_watcher_that_overflows_fails_once_and_is_removed_instead_of_growing()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        var client = new FsConnectClient(agent.Http, json: false);
        var id = (await client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir.Path })).WatcherId;
        var inotifyWithWatcher = InotifyCount(agent.Pid);

        // Each file makes two events (create, write); the queue holds 4096.
        for (var i = 0; i < 2500; i++)
        {
            await File.WriteAllTextAsync(dir[$"f{i}"], "x");
        }
        await EventuallyAsync(() => InotifyCount(agent.Pid) == inotifyWithWatcher - 1, LongWait, () => "the overflowing watch did not close its inotify fd");

        (await ThrowsConnect(() => client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = id }))).Is(ConnectCode.ResourceExhausted, "events were lost");
        (await ThrowsConnect(() => client.CallAsync<GetWatcherEventsResponse>("GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = id }))).Is(ConnectCode.NotFound, id);
    }

    [Fact]
    public async Task The_number_of_polling_watchers_is_bounded()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        var client = new FsConnectClient(agent.Http, json: true);
        var baseline = InotifyCount(agent.Pid);
        var ids = new List<string>();
        for (var i = 0; i < 64; i++)
        {
            ids.Add((await client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir.Path })).WatcherId);
        }
        (await ThrowsConnect(() => client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir.Path }))).Is(ConnectCode.ResourceExhausted, "64");

        await client.CallAsync<RemoveWatcherResponse>("RemoveWatcher", new RemoveWatcherRequest { WatcherId = ids[0] });
        ids[0] = (await client.CallAsync<CreateWatcherResponse>("CreateWatcher", new CreateWatcherRequest { Path = dir.Path })).WatcherId;
        Assert.Equal(64, ids.Distinct().Count());
        Assert.Equal(baseline + 64, InotifyCount(agent.Pid));
    }
}
