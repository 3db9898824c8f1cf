using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;
using Xunit.Abstractions;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// Three real paddockd processes in cluster mode, each in its own network namespace (ClusterNetwork), on one real
/// PostgreSQL (the store fixture), creating real runc sandboxes: they form one Orleans cluster, each node's grain
/// answers from that node, a SIGKILLed node is declared dead and its sandboxes are marked lost (404 through another
/// node, the reason in their records), and the node restarted under the same id rejoins and destroys what it left.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterMembershipTests(PostgresFixture fixture, ITestOutputHelper output)
{
    // Short, so that the test waits seconds, not the production default's half minute; the bound the daemon promises
    // for it (ClusterSettings.DeathDeclarationBound) is what the wait below allows, twice over for a loaded machine.
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Three_nodes_form_a_cluster_a_killed_node_is_declared_dead_its_sandboxes_lost_and_it_rejoins()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];
        var bound = new Daemon.Cluster.ClusterSettings { NodeId = "x", AdvertiseAddress = IPAddress.Loopback, ProbeTimeout = ProbeTimeout }.DeathDeclarationBound * 2;

        await using var network = await ClusterNetwork.CreateAsync(3, ct);
        var nodes = new List<ClusterNode>();
        try
        {
            string[] names = ["a", "b", "c"];
            for (var i = 0; i < names.Length; i++)
            {
                nodes.Add(new ClusterNode(names[i], i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, ProbeTimeout));
            }
            // The first alone (it runs the schema steps and makes the cluster's version row), then the other two together.
            await nodes[0].StartAsync(ct);
            await Task.WhenAll(nodes[1].StartAsync(ct), nodes[2].StartAsync(ct));
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

            // Every node sees all three active (bounded: joining takes a few probe rounds).
            foreach (var node in nodes)
            {
                await UntilAsync(async () => (await node.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == 3,
                    TimeSpan.FromSeconds(60), $"node {node.NodeId} to see three active nodes", nodes, ct);
            }

            var (onB, tokenB) = await CreateAsync(b, ct);
            var (onA, _) = await CreateAsync(a, ct);
            // A asks B's node grain, which runs on B's silo only, and B answers from its own memory: one sandbox there.
            var viewFromA = await a.NodesAsync(ct);
            Assert.Equal(1, (int?)viewFromA.Single(n => (string?)n!["nodeID"] == "b")!["reserved"]);
            Assert.Equal(1, (int?)viewFromA.Single(n => (string?)n!["nodeID"] == "a")!["reserved"]);
            Assert.Equal(0, (int?)viewFromA.Single(n => (string?)n!["nodeID"] == "c")!["reserved"]);
            // The store says which node runs which sandbox.
            Assert.Equal("b", await NodeOfAsync(database, onB, ct));
            Assert.Equal("a", await NodeOfAsync(database, onA, ct));

            // Routing: B's sandbox through C's API and C's proxy (headers and host forms), forwarded to B in one hop.
            using (var detail = await c.Api.GetAsync($"/sandboxes/{onB}", ct))
            {
                Assert.Equal(HttpStatusCode.OK, detail.StatusCode);
                Assert.Equal(onB, (string?)(await detail.Content.ReadFromJsonAsync<JsonObject>(ct))!["sandboxID"]);
            }
            Assert.Equal((0, "routed-42\n"), await DaemonCommands.RunAsync(c.Api, onB, tokenB, "echo routed-$((40+2))"));
            using (var health = new HttpRequestMessage(HttpMethod.Get, "/health"))
            {
                health.Headers.Host = $"49983-{onB}.localhost:3000";
                using var response = await c.Api.SendAsync(health, ct);
                Assert.True(response.IsSuccessStatusCode, $"envd /health of B's sandbox through C by host: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
            }

            var killed = Stopwatch.StartNew();
            await b.KillAsync();
            await UntilAsync(async () => (await a.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == "b" && (string?)n["status"] == "dead"),
                bound, "A to see B declared dead", nodes, ct);
            var declaredDead = killed.Elapsed;
            await UntilAsync(async () => (await c.Api.GetAsync($"/sandboxes/{onB}", ct)).StatusCode == HttpStatusCode.NotFound,
                TimeSpan.FromSeconds(30), "C to answer 404 for B's sandbox", nodes, ct);
            var lost = killed.Elapsed;
            output.WriteLine($"SIGKILL to declared dead (seen by A): {declaredDead.TotalSeconds:F1} s; to its sandbox answering 404 through C: {lost.TotalSeconds:F1} s (probe timeout {ProbeTimeout.TotalSeconds} s, bound {bound.TotalSeconds} s)");

            using (var gone = await c.Api.GetAsync($"/sandboxes/{onB}", ct))
            {
                var message = (string?)(await gone.Content.ReadFromJsonAsync<JsonObject>(ct))!["message"];
                Assert.Contains("lost: its node b was declared dead by the cluster", message, StringComparison.Ordinal);
            }
            Assert.Equal("killed", await StateOfAsync(database, onB, ct));
            // A's own sandbox is untouched, and A and C still see each other.
            Assert.Equal(HttpStatusCode.OK, (await a.Api.GetAsync($"/sandboxes/{onA}", ct)).StatusCode);
            Assert.Equal("running", await StateOfAsync(database, onA, ct));
            Assert.Equal(2, (await c.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active"));

            // B again, same id and state: it rejoins, and its sandbox (still running on the host, its record lost) is
            // a stray that its recovery destroys.
            Assert.NotEmpty(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")));
            await b.StartAsync(ct);
            await UntilAsync(async () => (await a.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == 3,
                TimeSpan.FromSeconds(60), "A to see B active again", nodes, ct);
            Assert.Empty(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")));
            Assert.Contains("found still running on the host after it had ended", await LogsOfAsync(a, onB, ct), StringComparison.Ordinal);
            Assert.Equal("killed", await StateOfAsync(database, onB, ct));
            // The rejoined node runs sandboxes again, and A's is still there.
            var (again, _) = await CreateAsync(b, ct);
            Assert.Equal("b", await NodeOfAsync(database, again, ct));
            Assert.Equal(HttpStatusCode.OK, (await a.Api.GetAsync($"/sandboxes/{onA}", ct)).StatusCode);
        }
        catch
        {
            foreach (var node in nodes)
            {
                output.WriteLine($"---- paddockd {node.NodeId} ----\n{node.Log}");
            }
            throw;
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
    }

    private static async Task<(string Id, string? Token)> CreateAsync(ClusterNode node, CancellationToken ct)
    {
        using var response = await node.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base", ["timeout"] = 300 }, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create on {node.NodeId}: {(int)response.StatusCode} {body}");
        var created = JsonNode.Parse(body)!;
        return ((string)created["sandboxID"]!, (string?)created["envdAccessToken"]);
    }

    private static async Task<string> LogsOfAsync(ClusterNode node, string sandboxId, CancellationToken ct) =>
        await node.Api.GetStringAsync($"/sandboxes/{sandboxId}/logs", ct);

    private async Task<string?> NodeOfAsync(string database, string sandboxId, CancellationToken ct) =>
        (string?)await ScalarAsync(database, "SELECT node_id FROM sandboxes WHERE sandbox_id = @id", sandboxId, ct);

    private async Task<string?> StateOfAsync(string database, string sandboxId, CancellationToken ct) =>
        (string?)await ScalarAsync(database, "SELECT state FROM sandboxes WHERE sandbox_id = @id", sandboxId, ct);

    private async Task<object?> ScalarAsync(string database, string sql, string sandboxId, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(fixture.Server.ConnectionString(database));
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("id", sandboxId);
        return await command.ExecuteScalarAsync(ct);
    }

    /// <summary>Polls every 200 ms until <paramref name="condition"/> holds; fails with the nodes' logs after <paramref name="limit"/>.</summary>
    private static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan limit, string what, IReadOnlyList<ClusterNode> nodes, CancellationToken ct)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // a node not answering yet counts as "not yet"
            }
            if (watch.Elapsed > limit)
            {
                throw new TimeoutException($"waited {limit.TotalSeconds} s for {what}");
            }
            await Task.Delay(200, ct);
        }
    }
}
