using System.Net;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using Paddock.Daemon.Tests.Store;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Teams.TenantApi;

namespace Paddock.Daemon.Tests.Teams;

/// <summary>Teams, keys and sandbox ownership on disk: the schema step from before teams, and a daemon restart.</summary>
public sealed class TeamPersistenceTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();

    [Fact]
    public async Task Step_2_gives_old_keys_ids_and_the_default_team_and_old_sandboxes_the_default_team()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var path = Path.Combine(_state.Path, "paddock.db");
        await using (var connection = new SqliteConnection($"Data Source={path}"))
        {
            await connection.OpenAsync(timeout.Token);
            await using var command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);"
                + SqliteMigrations.Steps.Single(s => s.Version == 1).Sql
                + "INSERT INTO schema_migrations VALUES (1, 0);"
                + "INSERT INTO api_keys VALUES ('h1', 'e2b_…aaaa', 1), ('h2', 'e2b_…bbbb', 2), ('h3', 'e2b_…cccc', 3);";
            await command.ExecuteNonQueryAsync(timeout.Token);
        }
        var store = new SqliteStore(path, NullLogger<SqliteStore>.Instance);
        await store.InitializeAsync(timeout.Token);
        await store.InsertAsync(TestRecords.Record("old0000000000000000a") with { TeamId = "default" }, timeout.Token);

        var keys = await store.ListApiKeysAsync(timeout.Token);
        Assert.Equal(["h1", "h2", "h3"], keys.Select(k => k.KeyHash));
        Assert.All(keys, k => Assert.True(Guid.TryParseExact(k.KeyId, "D", out _), k.KeyId));
        Assert.Equal(3, keys.Select(k => k.KeyId).Distinct().Count());
        Assert.All(keys, k => Assert.Equal("default", k.TeamId));
        Assert.All(keys, k => Assert.Null(k.RevokedAt));
        var team = Assert.Single(await store.ListTeamsAsync(timeout.Token));
        Assert.Equal(("default", true, TeamLimits.None), (team.TeamId, team.IsAdmin, team.Limits));
        Assert.Equal("default", (await store.GetAsync("old0000000000000000a", timeout.Token))!.TeamId);
    }

    [Fact]
    public async Task Teams_keys_and_ownership_survive_a_restart_and_adopted_sandboxes_count_against_the_limit()
    {
        string key, team, id;
        await using (var first = await TestDaemon.StartAsync(_runtime, _state.Path))
        {
            team = await CreateTeamAsync(first, UniqueName("kept"), "\"maxSandboxes\":1");
            (key, _) = await CreateKeyAsync(first, team);
            using var client = ClientFor(first, key);
            id = await CreateSandboxAsync(client);
        }

        await using var second = await TestDaemon.StartAsync(_runtime, _state.Path);
        using var again = ClientFor(second, key);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(again, HttpMethod.Get, $"/sandboxes/{id}")).Status);
        AssertError(HttpStatusCode.NotFound, await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{id}"));
        Assert.Contains("maxSandboxes", AssertError(HttpStatusCode.TooManyRequests, await SendAsync(again, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""")), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(again, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        var next = await CreateSandboxAsync(again);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(again, HttpMethod.Delete, $"/sandboxes/{next}")).Status);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
