using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Teams;

public sealed class TeamStoreTests : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));

    private async Task<SqliteStore> OpenAsync()
    {
        var store = new SqliteStore(Path.Combine(_dir.Path, "paddock.db"), NullLogger<SqliteStore>.Instance);
        await store.InitializeAsync(_timeout.Token);
        return store;
    }

    private static ApiKeyRecord Key(string id, string team) => new()
    {
        KeyId = id, KeyHash = "hash-" + id, KeyMask = "e2b_…" + id[..4], TeamId = team, Name = "n", CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(1000),
    };

    [Fact]
    public async Task Teams_round_trip_and_names_are_unique()
    {
        var store = await OpenAsync();
        var team = new TeamRecord { TeamId = "t1", Name = "acme", IsAdmin = false, Limits = new TeamLimits(3, null, 2048), CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(5) };
        await store.InsertTeamAsync(team, _timeout.Token);
        Assert.Equal(team, (await store.ListTeamsAsync(_timeout.Token)).Single(t => t.TeamId == "t1"));
        await Assert.ThrowsAsync<DuplicateNameException>(() => store.InsertTeamAsync(team with { TeamId = "t2" }, _timeout.Token));
        await Assert.ThrowsAsync<DuplicateNameException>(() => store.UpdateTeamAsync(team with { Name = "default" }, _timeout.Token));
        Assert.True(await store.UpdateTeamAsync(team with { Limits = TeamLimits.None }, _timeout.Token));
        Assert.Equal(TeamLimits.None, (await store.ListTeamsAsync(_timeout.Token)).Single(t => t.TeamId == "t1").Limits);
        Assert.False(await store.UpdateTeamAsync(team with { TeamId = "nope", Name = "other" }, _timeout.Token));
    }

    [Fact]
    public async Task Keys_are_renamed_and_revoked_only_within_their_team_and_only_once()
    {
        var store = await OpenAsync();
        await store.AddApiKeyAsync(Key("k1aaaaaa", "default"), _timeout.Token);
        Assert.False(await store.RenameApiKeyAsync("other", "k1aaaaaa", "x", _timeout.Token));
        Assert.False(await store.RevokeApiKeyAsync("other", "k1aaaaaa", DateTimeOffset.UnixEpoch, _timeout.Token));
        Assert.True(await store.RenameApiKeyAsync("default", "k1aaaaaa", "renamed", _timeout.Token));
        var at = DateTimeOffset.FromUnixTimeMilliseconds(7000);
        Assert.True(await store.RevokeApiKeyAsync("default", "k1aaaaaa", at, _timeout.Token));
        Assert.False(await store.RevokeApiKeyAsync("default", "k1aaaaaa", at, _timeout.Token));
        Assert.False(await store.RenameApiKeyAsync("default", "k1aaaaaa", "again", _timeout.Token));
        await store.SetApiKeyLastUsedAsync("k1aaaaaa", at, _timeout.Token);
        var key = Assert.Single(await store.ListApiKeysAsync(_timeout.Token));
        Assert.Equal(("renamed", at, at), (key.Name, key.RevokedAt, key.LastUsedAt));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _timeout.Dispose();
        _dir.Dispose();
    }
}
