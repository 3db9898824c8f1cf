using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Agent.Filesystem;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>The polling watchers' limits, in process with small limits (the agent's own are 64 / 4096 / 10 min).</summary>
public sealed class WatcherRegistryTests
{
    private static readonly EntryInfos Infos = new(new UserDirectory(null));

    [Fact]
    public async Task A_watcher_nobody_polls_is_removed_after_the_idle_timeout()
    {
        using var dir = new TempDir();
        using var registry = new WatcherRegistry(new WatcherLimits { IdleTimeout = TimeSpan.FromMilliseconds(200) }, NullLogger.Instance);
        var id = registry.Create(dir.Path, new WatchOptions(), Infos);
        Assert.Equal(1, registry.Count);
        await EventuallyAsync(() => registry.Count == 0, LongWait, () => "the idle watcher is still there");
        Assert.Equal(ConnectCode.NotFound, Assert.Throws<ConnectException>(() => registry.Drain(id)).Code);
    }

    [Fact]
    public async Task The_idle_sweep_stops_with_the_last_watcher_and_starts_again_with_the_next()
    {
        using var dir = new TempDir();
        using var registry = new WatcherRegistry(new WatcherLimits { IdleTimeout = TimeSpan.FromMilliseconds(200) }, NullLogger.Instance);
        registry.Create(dir.Path, new WatchOptions(), Infos);
        await EventuallyAsync(() => registry.Count == 0, LongWait, () => "the first idle watcher is still there");

        // The sweep stopped once none was left; a new watcher must start it again, or this one would stay.
        var id = registry.Create(dir.Path, new WatchOptions(), Infos);
        await EventuallyAsync(() => registry.Count == 0, LongWait, () => "the second idle watcher is still there");
        Assert.Equal(ConnectCode.NotFound, Assert.Throws<ConnectException>(() => registry.Drain(id)).Code);
    }

    [Fact]
    public async Task Limits_on_watchers_and_queued_events_hold()
    {
        using var dir = new TempDir();
        using var registry = new WatcherRegistry(new WatcherLimits { MaxWatchers = 2, QueueCapacity = 10 }, NullLogger.Instance);
        var first = registry.Create(dir.Path, new WatchOptions(), Infos);
        var second = registry.Create(dir.Path, new WatchOptions(), Infos);
        Assert.Equal(ConnectCode.ResourceExhausted, Assert.Throws<ConnectException>(() => registry.Create(dir.Path, new WatchOptions(), Infos)).Code);

        await File.WriteAllTextAsync(dir["a"], "x"); // create + write: 2 events, well within 10
        await EventuallyAsync(() => registry.Drain(first).Any(e => e.Type == EventType.Write), LongWait, () => "no write event");

        for (var i = 0; i < 20; i++)
        {
            await File.WriteAllTextAsync(dir[$"f{i}"], "x");
        }
        // The second watcher, never polled, overflowed: it fails once, then is gone.
        await EventuallyAsync(
            () =>
            {
                try
                {
                    registry.Drain(second);
                    return false;
                }
                catch (ConnectException ex) when (ex.Code == ConnectCode.ResourceExhausted)
                {
                    return true;
                }
            },
            LongWait,
            () => "the overflowing watcher did not fail");
        Assert.Equal(ConnectCode.NotFound, Assert.Throws<ConnectException>(() => registry.Drain(second)).Code);
        Assert.Equal(1, registry.Count);
    }
}
