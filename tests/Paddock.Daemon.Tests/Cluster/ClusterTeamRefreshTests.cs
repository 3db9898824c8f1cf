using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Cluster;
using Paddock.Daemon.Store;
using Paddock.Daemon.Teams;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// How a node learns of changes made through another node, without a cluster: the team directory tells the fanout
/// after its own reload (outside its lock, so a node that reloads in answer cannot deadlock with it), and the periodic
/// reload (ClusterTeamRefresh) picks up keys added and revoked in the store behind the node's back, keeps the keys it
/// has while the store cannot be read, and logs such an outage once.
/// </summary>
public sealed class ClusterTeamRefreshTests
{
    private static readonly DateTimeOffset Start = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);

    [Fact]
    public async Task A_change_tells_the_fanout_after_its_own_reload_and_outside_the_lock()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var store = new MemoryTeamStore();
        var authenticator = new ApiKeyAuthenticator();
        var fanout = new CallbackFanout();
        var directory = new TeamDirectory(store, authenticator, new DaemonOptions(), TimeProvider.System, fanout, NullLogger<TeamDirectory>.Instance);
        await directory.ReloadAsync(timeout.Token);
        var seenByFanout = new List<string>();
        fanout.OnNotify = async () =>
        {
            // As another node's grain call that lands back here would: a reload, which needs the directory's lock.
            await directory.ReloadAsync(timeout.Token);
            seenByFanout.AddRange(directory.Teams.Select(t => t.Name));
        };
        var team = await directory.CreateTeamAsync("t", TeamLimits.None, timeout.Token);
        Assert.Equal(1, fanout.Calls);
        Assert.Equal(["t"], seenByFanout);
        var (_, key) = await directory.CreateKeyAsync(team.TeamId, "k", timeout.Token);
        Assert.Equal(2, fanout.Calls);
        Assert.Null(authenticator.Authenticate(key, out _));
        // A change that fails changes nothing and tells nobody.
        await Assert.ThrowsAsync<UnknownTeamException>(() => directory.CreateKeyAsync("no-such-team", "k", timeout.Token));
        Assert.Equal(2, fanout.Calls);
    }

    [Fact]
    public async Task The_periodic_reload_sees_keys_made_and_revoked_elsewhere_and_keeps_the_old_keys_while_the_store_is_down()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ct = timeout.Token;
        var store = new MemoryTeamStore();
        var authenticator = new ApiKeyAuthenticator();
        var directory = new TeamDirectory(store, authenticator, new DaemonOptions(), TimeProvider.System, new NoTeamChangeFanout(), NullLogger<TeamDirectory>.Instance);
        var team = await directory.CreateTeamAsync("t", TeamLimits.None, ct);
        var (first, firstKey) = await directory.CreateKeyAsync(team.TeamId, "first", ct);
        var log = new CountingLogger<ClusterTeamRefresh>();
        // 50 ms instead of 5 s: the loop is what is tested, not the period.
        using var refresh = new ClusterTeamRefresh(directory, TimeProvider.System, log, TimeSpan.FromMilliseconds(50));
        await refresh.StartAsync(ct);
        try
        {
            // Another node makes a key and revokes the first: only the store changes.
            var secondKey = store.AddKey(team.TeamId);
            store.Revoke(first.KeyId);
            await UntilAsync(() => authenticator.Authenticate(secondKey, out _) is null && authenticator.Authenticate(firstKey, out _) is not null,
                "the periodic reload to load the new key and drop the revoked one", ct);

            // The store down: the keys loaded before stay valid, and the outage is logged once, however many ticks fail.
            store.Down = true;
            var thirdKey = store.AddKey(team.TeamId);
            await UntilAsync(() => log.Count(LogLevel.Warning) > 0 && store.FailedReads >= 3, "three failed reloads", ct);
            Assert.Null(authenticator.Authenticate(secondKey, out var caller));
            Assert.Equal(team.TeamId, caller!.TeamId);
            Assert.NotNull(authenticator.Authenticate(thirdKey, out _));
            Assert.Equal(1, log.Count(LogLevel.Warning));

            // Back: the next tick loads what changed meanwhile, and says the reload works again.
            store.Down = false;
            await UntilAsync(() => authenticator.Authenticate(thirdKey, out _) is null, "the reload to work again", ct);
            await UntilAsync(() => log.Count(LogLevel.Information) == 1, "the recovery line", ct);
        }
        finally
        {
            await refresh.StopAsync(CancellationToken.None);
        }
    }

    /// <summary>Polls every 20 ms, for at most 20 s.</summary>
    private static async Task UntilAsync(Func<bool> condition, string what, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        while (!condition())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(20))
            {
                throw new TimeoutException($"waited 20 s for {what}");
            }
            await Task.Delay(20, ct);
        }
    }

    private sealed class CallbackFanout : ITeamChangeFanout
    {
        public Func<Task> OnNotify { get; set; } = () => Task.CompletedTask;

        public int Calls { get; private set; }

        public async Task NotifyAsync(CancellationToken cancellationToken)
        {
            Calls++;
            await OnNotify().WaitAsync(TimeSpan.FromSeconds(10), cancellationToken);
        }
    }

    private sealed class CountingLogger<T> : ILogger<T>
    {
        private readonly List<LogLevel> _levels = [];

        public int Count(LogLevel level)
        {
            lock (_levels)
            {
                return _levels.Count(l => l == level);
            }
        }

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_levels)
            {
                _levels.Add(logLevel);
            }
        }
    }

    /// <summary>Teams and keys in memory, as the shared store that other nodes also write; <see cref="Down"/> fails every read.</summary>
    private sealed class MemoryTeamStore : ITeamStore
    {
        private readonly Lock _lock = new();
        private readonly List<TeamRecord> _teams = [];
        private readonly List<ApiKeyRecord> _keys = [];
        private int _failedReads;

        public volatile bool Down;

        public int FailedReads => Volatile.Read(ref _failedReads);

        public string AddKey(string teamId)
        {
            var key = ApiKeys.Generate();
            lock (_lock)
            {
                _keys.Add(new ApiKeyRecord
                {
                    KeyId = Guid.NewGuid().ToString(), KeyHash = ApiKeys.Hash(key), KeyMask = ApiKeys.Mask(key),
                    TeamId = teamId, Name = "elsewhere", CreatedAt = Start,
                });
            }
            return key;
        }

        public void Revoke(string keyId)
        {
            lock (_lock)
            {
                var i = _keys.FindIndex(k => k.KeyId == keyId);
                _keys[i] = _keys[i] with { RevokedAt = Start };
            }
        }

        public Task<IReadOnlyList<TeamRecord>> ListTeamsAsync(CancellationToken cancellationToken)
        {
            ThrowIfDown();
            lock (_lock)
            {
                return Task.FromResult<IReadOnlyList<TeamRecord>>([.. _teams]);
            }
        }

        public Task InsertTeamAsync(TeamRecord team, CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                _teams.Add(team);
            }
            return Task.CompletedTask;
        }

        public Task<bool> UpdateTeamAsync(TeamRecord team, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<IReadOnlyList<ApiKeyRecord>> ListApiKeysAsync(CancellationToken cancellationToken)
        {
            ThrowIfDown();
            lock (_lock)
            {
                return Task.FromResult<IReadOnlyList<ApiKeyRecord>>([.. _keys]);
            }
        }

        public Task AddApiKeyAsync(ApiKeyRecord key, CancellationToken cancellationToken)
        {
            lock (_lock)
            {
                _keys.Add(key);
            }
            return Task.CompletedTask;
        }

        public Task<bool> RenameApiKeyAsync(string teamId, string keyId, string name, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task<bool> RevokeApiKeyAsync(string teamId, string keyId, DateTimeOffset at, CancellationToken cancellationToken) => throw new NotSupportedException();

        public Task SetApiKeyLastUsedAsync(string keyId, DateTimeOffset at, CancellationToken cancellationToken) => Task.CompletedTask;

        private void ThrowIfDown()
        {
            if (Down)
            {
                Interlocked.Increment(ref _failedReads);
                // What Npgsql throws when the server cannot be reached.
                throw new NpgsqlException("store down (test)");
            }
        }
    }
}
