using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Store;

/// <summary>
/// The real daemon (in-process, over real paddock-agent processes) on <c>--store postgres://…</c> against a real
/// PostgreSQL: records survive a daemon restart there, and a database outage is a clear 503 that ends by itself.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresDaemonTests(PostgresFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();

    private async Task<TestDaemon> StartAsync(string database) =>
        await TestDaemon.StartAsync(_runtime, _state.Path, o => o with
        {
            PostgresConnectionString = PostgresConnectionString.FromUri(fixture.Server.StoreUri(database)),
        });

    [Fact]
    public async Task Sandboxes_keys_and_logs_live_in_PostgreSQL_and_a_restarted_daemon_re_adopts_from_there()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var database = await fixture.Server.CreateDatabaseAsync(timeout.Token);
        string id;
        await using (var first = await StartAsync(database))
        {
            Assert.NotNull(first.PrintedKey);
            id = Get<string>(await CreateAsync(first, """{"templateID":"base","timeout":600,"metadata":{"who":"pg"}}"""), "sandboxID");
            Assert.IsType<PostgresStore>(first.Services.GetRequiredService<ISandboxStore>());
        }
        // Not in a SQLite file: the state directory holds the key file only.
        Assert.False(File.Exists(Path.Combine(_state.Path, "paddock.db")));

        await using var second = await StartAsync(database);
        Assert.Null(second.PrintedKey); // the key's hash was found in PostgreSQL
        var adopted = await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{id}");
        Assert.Equal(HttpStatusCode.OK, adopted.Status);
        Assert.Equal("pg", (string?)adopted.Body!["metadata"]!["who"]);
        var logs = await SendAsync(second.Api, HttpMethod.Get, $"/sandboxes/{id}/logs");
        Assert.Contains(logs.Body!["logs"]!.AsArray(), l => Get<string>(l!, "line").StartsWith("re-adopted after a daemon restart", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(second.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        var record = await second.Services.GetRequiredService<ISandboxStore>().GetAsync(id, timeout.Token);
        Assert.Equal(SandboxState.Killed, record!.State);
    }

    [Fact]
    public async Task A_second_daemon_on_the_same_database_is_refused_with_a_clear_message()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        var database = await fixture.Server.CreateDatabaseAsync(timeout.Token);
        await using var first = await StartAsync(database);
        using var otherState = new TempDir();
        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => TestDaemon.StartAsync(_runtime, otherState.Path, o => o with
        {
            PostgresConnectionString = PostgresConnectionString.FromUri(fixture.Server.StoreUri(database)),
        }));
        Assert.Contains("another paddockd already uses the state database", ex.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(first.Api, HttpMethod.Get, "/v2/sandboxes")).Status);
    }

    [Fact]
    public async Task While_PostgreSQL_is_down_the_API_answers_503_and_it_recovers_alone_with_nothing_lost()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(180));
        var database = await fixture.Server.CreateDatabaseAsync(timeout.Token);
        await using var daemon = await StartAsync(database);
        var before = Get<string>(await CreateAsync(daemon, """{"templateID":"base","timeout":600}"""), "sandboxID");

        await fixture.Server.StopServerAsync();
        try
        {
            // What needs the database says so; a running sandbox is still served from the daemon's memory.
            var create = await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""");
            Assert.Contains("state database (PostgreSQL) cannot be reached", AssertError(HttpStatusCode.ServiceUnavailable, create), StringComparison.Ordinal);
            var unknown = await SendAsync(daemon.Api, HttpMethod.Get, "/sandboxes/zzzzzzzzzzzzzzzzzzzz");
            Assert.Contains("state database (PostgreSQL) cannot be reached", AssertError(HttpStatusCode.ServiceUnavailable, unknown), StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{before}")).Status);
        }
        finally
        {
            await fixture.Server.StartServerAsync(timeout.Token);
        }

        // Npgsql's pool drops the dead connections on their first use; bounded: 50 tries, 200 ms apart.
        HttpStatusCode status = default;
        for (var i = 0; i < 50 && status != HttpStatusCode.OK; i++)
        {
            status = (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{before}/logs")).Status;
            if (status != HttpStatusCode.OK)
            {
                await Task.Delay(200, timeout.Token);
            }
        }
        Assert.Equal(HttpStatusCode.OK, status);
        var after = Get<string>(await CreateAsync(daemon, """{"templateID":"base","timeout":600}"""), "sandboxID");
        var listed = await SendAsync(daemon.Api, HttpMethod.Get, "/v2/sandboxes");
        Assert.Equal(new[] { after, before }.Order(), listed.Body!.AsArray().Select(s => Get<string>(s!, "sandboxID")).Order());
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await _runtime.DisposeAsync();
        Npgsql.NpgsqlConnection.ClearAllPools();
        _state.Dispose();
    }
}
