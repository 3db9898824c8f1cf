using Paddock.Daemon.Audit;
using Paddock.Daemon.Store;
using Paddock.Daemon.Teams;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Volumes;

namespace Paddock.Daemon.Tests.Store;

/// <summary>The stores of one database, as the daemon composes them (DaemonHost.AddStore).</summary>
internal sealed record StoreSet(ISandboxStore Sandboxes, IApiKeyStore Keys, ITeamStore Teams, ITemplateRecords Templates, IAuditStore Audit, IStoreConnections Connections);

/// <summary>
/// What every state store promises, run against each (<see cref="SqliteStoreTests"/>, <see cref="PostgresStoreTests"/>):
/// sandbox records and logs, keys and teams, template records and the build cache, the audit trail's bound.
/// </summary>
public abstract class StoreContractTests : IDisposable
{
    private protected readonly CancellationTokenSource Timeout = new(TimeSpan.FromSeconds(60));

    /// <summary>A migrated, empty store set of a fresh database.</summary>
    private protected abstract Task<StoreSet> OpenAsync();

    private async Task<ISandboxStore> OpenSandboxesAsync() => (await OpenAsync()).Sandboxes;

    [Fact]
    public async Task A_record_round_trips_with_every_field()
    {
        var store = await OpenSandboxesAsync();
        var record = TestRecords.Record("abc") with
        {
            TrafficAccessToken = "traffic", AutoPause = true, AutoPauseMemory = false, AutoResume = true,
            State = SandboxState.Paused, PausedAt = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_123_456), PausedWithMemory = true,
        };
        await store.InsertAsync(record, Timeout.Token);
        var read = await store.GetAsync("abc", Timeout.Token);
        Assert.NotNull(read);
        Assert.Equal(record with { Metadata = read.Metadata }, read);
        Assert.Equal(record.Metadata, read.Metadata);
        Assert.Null(await store.GetAsync("nope", Timeout.Token));
        var nulls = TestRecords.Record("nulls") with { Alias = null, EnvdAccessToken = null, AllowInternetAccess = null, EndedAt = null };
        await store.InsertAsync(nulls, Timeout.Token);
        var readNulls = (await store.GetAsync("nulls", Timeout.Token))!;
        Assert.Equal(nulls with { Metadata = readNulls.Metadata }, readNulls);
    }

    [Fact]
    public async Task Volume_records_and_their_mounts_round_trip_and_a_name_is_unique_per_team()
    {
        var volumes = new VolumeRecords((await OpenAsync()).Connections);
        var at = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        VolumeRecord Volume(string id, string team, string name) => new() { VolumeId = id, TeamId = team, Name = name, Token = "tok-" + id, SizeBytes = 5L << 30, CreatedAt = at };
        Assert.True(await volumes.InsertAsync(Volume("v1", "team-a", "data"), Timeout.Token));
        Assert.True(await volumes.InsertAsync(Volume("v2", "team-b", "data"), Timeout.Token));
        Assert.False(await volumes.InsertAsync(Volume("v3", "team-a", "data"), Timeout.Token));
        Assert.Equal([Volume("v1", "team-a", "data")], await volumes.ListAsync("team-a", Timeout.Token));
        Assert.Equal(["v1", "v2"], (await volumes.ListAsync(null, Timeout.Token)).Select(v => v.VolumeId));

        await volumes.InsertMountsAsync([new("sbx", "v1", "data", "/data"), new("sbx", "v2", "other", "/other")], Timeout.Token);
        // The same sandbox and path again replaces the row instead of failing.
        await volumes.InsertMountsAsync([new("sbx", "v2", "data2", "/data")], Timeout.Token);
        Assert.Equal([new SandboxVolumeMount("sbx", "v2", "data2", "/data"), new SandboxVolumeMount("sbx", "v2", "other", "/other")],
            await volumes.ListMountsAsync(Timeout.Token));

        await volumes.DeleteAsync("v1", Timeout.Token);
        Assert.Empty(await volumes.ListAsync("team-a", Timeout.Token));
    }

    [Fact]
    public async Task Inserting_the_same_id_twice_fails_with_a_clear_message()
    {
        var store = await OpenSandboxesAsync();
        await store.InsertAsync(TestRecords.Record("dup"), Timeout.Token);
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InsertAsync(TestRecords.Record("dup"), Timeout.Token));
        Assert.Contains("dup", ex.Message, StringComparison.Ordinal);
        var missing = await Assert.ThrowsAsync<InvalidOperationException>(() => store.UpdateAsync(TestRecords.Record("ghost"), Timeout.Token));
        Assert.Contains("ghost", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task List_filters_by_state_newest_first()
    {
        var store = await OpenSandboxesAsync();
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        await store.InsertAsync(TestRecords.Record("old", startedAt: t), Timeout.Token);
        await store.InsertAsync(TestRecords.Record("new", startedAt: t.AddSeconds(5)), Timeout.Token);
        await store.InsertAsync(TestRecords.Record("dead", SandboxState.Killed, t.AddSeconds(9)), Timeout.Token);
        await store.InsertAsync(TestRecords.Record("boot", SandboxState.Starting, t.AddSeconds(1)), Timeout.Token);
        var running = await store.ListAsync([SandboxState.Running], Timeout.Token);
        Assert.Equal(["new", "old"], running.Select(r => r.SandboxId));
        var live = await store.ListAsync([SandboxState.Running, SandboxState.Starting], Timeout.Token);
        Assert.Equal(["new", "boot", "old"], live.Select(r => r.SandboxId));
        Assert.Empty(await store.ListAsync([], Timeout.Token));
    }

    [Fact]
    public async Task A_deadline_change_does_not_revive_a_killed_record()
    {
        var store = await OpenSandboxesAsync();
        var record = TestRecords.Record("k");
        await store.InsertAsync(record, Timeout.Token);
        var newEnd = record.EndAt.AddMinutes(10);
        await store.SetDeadlineAsync("k", newEnd, Timeout.Token);
        Assert.Equal(newEnd, (await store.GetAsync("k", Timeout.Token))!.EndAt);

        await store.UpdateAsync(record with { State = SandboxState.Killed, EndedAt = record.StartedAt.AddSeconds(1), EndReason = "killed by test" }, Timeout.Token);
        await store.SetDeadlineAsync("k", newEnd.AddHours(1), Timeout.Token);
        var read = await store.GetAsync("k", Timeout.Token);
        Assert.Equal(SandboxState.Killed, read!.State);
        Assert.Equal("killed by test", read.EndReason);
        Assert.Equal(record.EndAt, read.EndAt);
    }

    [Fact]
    public async Task Logs_are_bounded_per_sandbox_and_read_in_either_direction()
    {
        var store = await OpenSandboxesAsync();
        var t0 = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        for (var i = 0; i < 12; i++)
        {
            await store.AppendLogAsync("s1", t0.AddSeconds(i), i % 2 == 0 ? SandboxLogLevel.Info : SandboxLogLevel.Warn, $"line {i}", keepLast: 5, Timeout.Token);
        }
        await store.AppendLogAsync("s2", t0, SandboxLogLevel.Error, "other sandbox", 5, Timeout.Token);

        var all = await store.GetLogsAsync("s1", null, 100, backward: false, Timeout.Token);
        Assert.Equal(["line 7", "line 8", "line 9", "line 10", "line 11"], all.Select(l => l.Message));
        Assert.Equal(SandboxLogLevel.Warn, all[0].Level);

        var fromNine = await store.GetLogsAsync("s1", t0.AddSeconds(9), 2, backward: false, Timeout.Token);
        Assert.Equal(["line 9", "line 10"], fromNine.Select(l => l.Message));

        var backward = await store.GetLogsAsync("s1", t0.AddSeconds(9), 2, backward: true, Timeout.Token);
        Assert.Equal(["line 9", "line 8"], backward.Select(l => l.Message));

        Assert.Single(await store.GetLogsAsync("s2", null, 100, false, Timeout.Token));
    }

    [Fact]
    public async Task Purge_removes_only_killed_records_that_ended_before_the_cutoff_and_their_logs()
    {
        var store = await OpenSandboxesAsync();
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        await store.InsertAsync(TestRecords.Record("gone") with { State = SandboxState.Killed, EndedAt = t }, Timeout.Token);
        await store.InsertAsync(TestRecords.Record("recent") with { State = SandboxState.Killed, EndedAt = t.AddDays(2) }, Timeout.Token);
        await store.InsertAsync(TestRecords.Record("alive"), Timeout.Token);
        await store.AppendLogAsync("gone", t, SandboxLogLevel.Info, "x", 10, Timeout.Token);

        Assert.Equal(1, await store.PurgeAsync(t.AddDays(1), Timeout.Token));
        Assert.Null(await store.GetAsync("gone", Timeout.Token));
        Assert.Empty(await store.GetLogsAsync("gone", null, 10, false, Timeout.Token));
        Assert.NotNull(await store.GetAsync("recent", Timeout.Token));
        Assert.NotNull(await store.GetAsync("alive", Timeout.Token));
    }

    [Fact]
    public async Task Concurrent_writers_do_not_lose_records()
    {
        var store = await OpenSandboxesAsync();
        var tasks = Enumerable.Range(0, 40).Select(i => Task.Run(async () =>
        {
            await store.InsertAsync(TestRecords.Record($"c{i}"), Timeout.Token);
            await store.AppendLogAsync($"c{i}", DateTimeOffset.UtcNow, SandboxLogLevel.Info, "hello", 10, Timeout.Token);
        }));
        await Task.WhenAll(tasks).WaitAsync(Timeout.Token);
        Assert.Equal(40, (await store.ListAsync([SandboxState.Running], Timeout.Token)).Count);
    }

    [Fact]
    public async Task Api_key_hashes_are_stored_once()
    {
        var keys = (await OpenAsync()).Keys;
        await keys.AddApiKeyAsync("h1", "e2b_…abcd", DateTimeOffset.UtcNow, Timeout.Token);
        await keys.AddApiKeyAsync("h1", "e2b_…abcd", DateTimeOffset.UtcNow, Timeout.Token);
        Assert.Equal(["h1"], await keys.ListApiKeyHashesAsync(Timeout.Token));
    }

    private static ApiKeyRecord Key(string id, string team) => new()
    {
        KeyId = id, KeyHash = "hash-" + id, KeyMask = "e2b_…" + id[..4], TeamId = team, Name = "n", CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1000),
    };

    [Fact]
    public async Task Teams_round_trip_and_names_are_unique()
    {
        var store = (await OpenAsync()).Teams;
        var team = new TeamRecord { TeamId = "t1", Name = "acme", IsAdmin = false, Limits = new TeamLimits(3, null, 2048, "gvisor"), CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(5) };
        await store.InsertTeamAsync(team, Timeout.Token);
        Assert.Equal(team, (await store.ListTeamsAsync(Timeout.Token)).Single(t => t.TeamId == "t1"));
        var admin = (await store.ListTeamsAsync(Timeout.Token)).Single(t => t.TeamId == "default");
        Assert.True(admin.IsAdmin);
        await Assert.ThrowsAsync<DuplicateNameException>(() => store.InsertTeamAsync(team with { TeamId = "t2" }, Timeout.Token));
        await Assert.ThrowsAsync<DuplicateNameException>(() => store.UpdateTeamAsync(team with { Name = "default" }, Timeout.Token));
        Assert.True(await store.UpdateTeamAsync(team with { Limits = TeamLimits.None }, Timeout.Token));
        Assert.Equal(TeamLimits.None, (await store.ListTeamsAsync(Timeout.Token)).Single(t => t.TeamId == "t1").Limits);
        Assert.False(await store.UpdateTeamAsync(team with { TeamId = "nope", Name = "other" }, Timeout.Token));
    }

    [Fact]
    public async Task Keys_are_renamed_and_revoked_only_within_their_team_and_only_once()
    {
        var store = (await OpenAsync()).Teams;
        await store.AddApiKeyAsync(Key("k1aaaaaa", "default"), Timeout.Token);
        Assert.False(await store.RenameApiKeyAsync("other", "k1aaaaaa", "x", Timeout.Token));
        Assert.False(await store.RevokeApiKeyAsync("other", "k1aaaaaa", DateTimeOffset.UnixEpoch, Timeout.Token));
        Assert.True(await store.RenameApiKeyAsync("default", "k1aaaaaa", "renamed", Timeout.Token));
        var at = DateTimeOffset.FromUnixTimeMilliseconds(7000);
        Assert.True(await store.RevokeApiKeyAsync("default", "k1aaaaaa", at, Timeout.Token));
        Assert.False(await store.RevokeApiKeyAsync("default", "k1aaaaaa", at, Timeout.Token));
        Assert.False(await store.RenameApiKeyAsync("default", "k1aaaaaa", "again", Timeout.Token));
        await store.SetApiKeyLastUsedAsync("k1aaaaaa", at, Timeout.Token);
        var key = Assert.Single(await store.ListApiKeysAsync(Timeout.Token));
        Assert.Equal(("renamed", at, at), (key.Name, key.RevokedAt, key.LastUsedAt));
    }

    private static TemplateRecord Template(string id, long createdMs) => new()
    {
        TemplateId = id,
        TeamId = "default",
        Names = [id + "-name", "alias"],
        Kind = TemplateKind.Snapshot,
        Layers = ["/layers/" + id, "/layers/base"],
        OwnLayer = "/layers/" + id,
        SizeBytes = 5L << 32, // past 32 bits: the column must hold it
        CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(createdMs),
        ParentId = "base",
        SourceSandboxId = "sbx",
        DefaultUser = "user",
        Public = true,
        EnvVars = new Dictionary<string, string> { ["A"] = "1" },
        Workdir = "/home/user",
        StartCmd = "sleep 1",
        ReadyCmd = "true",
        Isolation = "runc",
    };

    [Fact]
    public async Task Template_records_upsert_list_in_creation_order_and_delete()
    {
        var templates = (await OpenAsync()).Templates;
        await templates.UpsertAsync(Template("t2", 2000), Timeout.Token);
        await templates.UpsertAsync(Template("t1", 1000), Timeout.Token);
        var replaced = Template("t2", 2000) with { Names = ["renamed"], Public = false, Workdir = null, Isolation = null, EnvVars = new Dictionary<string, string>() };
        await templates.UpsertAsync(replaced, Timeout.Token);

        var all = await templates.ListAsync(Timeout.Token);
        Assert.Equal(["t1", "t2"], all.Select(t => t.TemplateId));
        var read = (await templates.GetAsync("t2", Timeout.Token))!;
        Assert.Equal(["renamed"], read.Names);
        Assert.Equal(replaced.Layers, read.Layers);
        Assert.Equal((5L << 32, false, null, null, "sleep 1"), (read.SizeBytes, read.Public, read.Workdir, read.Isolation, read.StartCmd));
        Assert.Empty(read.EnvVars);
        Assert.Equal("1", (await templates.GetAsync("t1", Timeout.Token))!.EnvVars["A"]);

        Assert.True(await templates.DeleteAsync("t1", Timeout.Token));
        Assert.False(await templates.DeleteAsync("t1", Timeout.Token));
        Assert.Null(await templates.GetAsync("t1", Timeout.Token));
        Assert.Single(await templates.ListAsync(Timeout.Token));

        Assert.Null(await templates.GetCachedLayerAsync("k", Timeout.Token));
        await templates.PutCachedLayerAsync("k", "/cache/a", 10, DateTimeOffset.UnixEpoch, Timeout.Token);
        await templates.PutCachedLayerAsync("k", "/cache/b", 20, DateTimeOffset.UnixEpoch, Timeout.Token);
        Assert.Equal(("/cache/b", 20L), await templates.GetCachedLayerAsync("k", Timeout.Token));
    }

    [Fact]
    public async Task The_audit_trail_keeps_its_head_and_newest_half_and_counts_the_rest()
    {
        var audit = (await OpenAsync()).Audit;
        var t0 = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        AuditEvent Event(int i) => new() { At = t0.AddSeconds(i), Kind = AuditKinds.ProcessStart, Cmd = "/bin/sh", Pid = i };
        long droppedByBound = 0;
        for (var batch = 0; batch < 5; batch++)
        {
            var events = Enumerable.Range(batch * 5, 5).Select(i => new PendingAuditEvent("sbx", "team-a", Event(i))).ToList();
            droppedByBound += await audit.AppendAsync(events, new Dictionary<string, long>(), maxPerSandbox: 10, Timeout.Token);
        }
        await audit.AppendAsync([new PendingAuditEvent("other", "team-b", Event(100))], new Dictionary<string, long> { ["sbx"] = 3 }, 10, Timeout.Token);

        Assert.Equal(15, droppedByBound);
        Assert.Equal(10, await audit.CountAsync("sbx", Timeout.Token));
        var read = await audit.ReadAsync("sbx", 0, null, null, 100, Timeout.Token);
        Assert.Equal("team-a", read.TeamId);
        Assert.Equal([0, 1, 2, 3, 4, 20, 21, 22, 23, 24], read.Events.Select(e => e.Pid!.Value));
        Assert.Equal(18, read.Dropped); // 15 by the bound, 3 lost before the store
        Assert.Equal(read.Events[4].Seq, read.DroppedAfterSeq);
        Assert.True(read.Events.Zip(read.Events.Skip(1)).All(p => p.First.Seq < p.Second.Seq));

        var window = await audit.ReadAsync("sbx", read.Events[1].Seq, t0.AddSeconds(2), t0.AddSeconds(21), 2, Timeout.Token);
        Assert.Equal([2, 3], window.Events.Select(e => e.Pid!.Value));

        Assert.Equal(10, await audit.PurgeAsync(t0.AddSeconds(50), Timeout.Token));
        Assert.Equal(0, await audit.CountAsync("sbx", Timeout.Token));
        Assert.Equal(1, await audit.CountAsync("other", Timeout.Token));
    }

    public virtual void Dispose()
    {
        Timeout.Dispose();
        GC.SuppressFinalize(this);
    }
}
