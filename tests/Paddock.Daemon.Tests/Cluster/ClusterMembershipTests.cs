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
/// PostgreSQL (the store fixture), creating real runc sandboxes, two slots per node: creates through one node spread
/// over all three by free slots, a full cluster answers 429, another node's sandbox is reachable through any node's
/// API and proxy, a SIGKILLed node is declared dead and its sandboxes are marked lost (404 everywhere, the reason in
/// their records), creates then go to the survivors, and the node restarted under the same id rejoins, destroys what
/// it left running and takes creates again.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterMembershipTests(PostgresFixture fixture, ITestOutputHelper output)
{
    // Short, so that the test waits seconds, not the production default's half minute; the bound the daemon promises
    // for it (ClusterSettings.DeathDeclarationBound) is what the wait below allows, twice over for a loaded machine.
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Three_nodes_place_route_declare_a_killed_node_dead_mark_its_sandboxes_lost_and_take_it_back()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(6));
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
            foreach (var node in nodes)
            {
                await UntilAsync(async () => (await node.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == 3,
                    TimeSpan.FromSeconds(60), $"node {node.NodeId} to see three active nodes", ct);
            }

            // Placement: six creates through A fill the three nodes' two slots each; the seventh (through C) is a 429.
            var created = new List<(string Id, string? Token)>();
            for (var i = 0; i < 3 * ClusterNode.MaxSandboxes; i++)
            {
                created.Add(await CreateAsync(a, ct));
            }
            var owners = new Dictionary<string, string>();
            foreach (var (id, _) in created)
            {
                owners[id] = (await NodeOfAsync(database, id, ct))!;
            }
            Assert.All(names, n => Assert.Equal(ClusterNode.MaxSandboxes, owners.Values.Count(o => o == n)));
            using (var full = await c.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base" }, ct))
            {
                Assert.Equal(HttpStatusCode.TooManyRequests, full.StatusCode);
                Assert.Contains("every node of the cluster", await full.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
            }
            // The list through any node is the cluster's: C lists the sandboxes on A, B and C, in both API versions.
            var all = created.Select(s => s.Id).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(all, await ListedIdsAsync(c, "/v2/sandboxes", ct));
            Assert.Equal(all, await ListedIdsAsync(c, "/sandboxes", ct));
            // A asks each node's grain, which runs on that node's silo only and answers from that node's memory.
            Assert.All(await a.NodesAsync(ct), n => Assert.Equal(ClusterNode.MaxSandboxes, (int?)n!["reserved"]));

            // Routing: a sandbox of B through C's API and C's proxy (headers and host forms), forwarded to B in one hop.
            var (onB, tokenB) = created.First(s => owners[s.Id] == "b");
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

            // B SIGKILLed: declared dead, its sandboxes lost, through every node.
            var killed = Stopwatch.StartNew();
            await b.KillAsync();
            await UntilAsync(async () => (await a.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == "b" && (string?)n["status"] == "dead"),
                bound, "A to see B declared dead", ct);
            var declaredDead = killed.Elapsed;
            await UntilAsync(async () => (await c.Api.GetAsync($"/sandboxes/{onB}", ct)).StatusCode == HttpStatusCode.NotFound,
                TimeSpan.FromSeconds(30), "C to answer 404 for B's sandbox", ct);
            var lost = killed.Elapsed;
            output.WriteLine($"SIGKILL to declared dead (seen by A): {declaredDead.TotalSeconds:F1} s; to its sandbox answering 404 through C: {lost.TotalSeconds:F1} s (probe timeout {ProbeTimeout.TotalSeconds} s, bound {bound.TotalSeconds} s)");
            using (var gone = await c.Api.GetAsync($"/sandboxes/{onB}", ct))
            {
                var message = (string?)(await gone.Content.ReadFromJsonAsync<JsonObject>(ct))!["message"];
                Assert.Contains("lost: its node b was declared dead by the cluster", message, StringComparison.Ordinal);
            }
            Assert.Equal(all.Where(id => owners[id] != "b"), await ListedIdsAsync(c, "/v2/sandboxes", ct));
            foreach (var (id, _) in created)
            {
                Assert.Equal(owners[id] == "b" ? "killed" : "running", await StateOfAsync(database, id, ct));
            }
            Assert.Equal(2, (await c.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active"));

            // A slot freed on A (the kill sent through C, forwarded to A): the next create, through C, goes to A, not to dead B.
            var onA = created.First(s => owners[s.Id] == "a").Id;
            Assert.Equal(HttpStatusCode.NoContent, (await c.Api.DeleteAsync($"/sandboxes/{onA}", ct)).StatusCode);
            // The kill answers before its teardown ends, and the slot is A's again when the teardown is done.
            await UntilAsync(async () => (await c.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == "a" && (int?)n["reserved"] < ClusterNode.MaxSandboxes),
                TimeSpan.FromSeconds(60), "A to report a free slot after the kill", ct);
            var (next, _) = await CreateAsync(c, ct);
            Assert.Equal("a", await NodeOfAsync(database, next, ct));

            // B again, same id and state: it rejoins; its sandboxes, still on the host with their records lost, are
            // strays that its recovery destroys; then the one free slot of the cluster is B's.
            Assert.NotEmpty(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")));
            await b.StartAsync(ct);
            await UntilAsync(async () => (await a.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == 3,
                TimeSpan.FromSeconds(60), "A to see B active again", ct);
            Assert.Empty(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")));
            Assert.Contains("found still running on the host after it had ended", await a.Api.GetStringAsync($"/sandboxes/{onB}/logs", ct), StringComparison.Ordinal);
            Assert.Equal("killed", await StateOfAsync(database, onB, ct));
            var (again, _) = await CreateAsync(a, ct);
            Assert.Equal("b", await NodeOfAsync(database, again, ct));
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
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create through {node.NodeId}: {(int)response.StatusCode} {body}");
        var created = JsonNode.Parse(body)!;
        return ((string)created["sandboxID"]!, (string?)created["envdAccessToken"]);
    }

    private static async Task<List<string>> ListedIdsAsync(ClusterNode node, string path, CancellationToken ct) =>
        [.. (await node.Api.GetFromJsonAsync<JsonArray>(path, ct))!.Select(s => (string)s!["sandboxID"]!).Order(StringComparer.Ordinal)];

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

    /// <summary>Polls every 200 ms until <paramref name="condition"/> holds; throws after <paramref name="limit"/>.</summary>
    private static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan limit, string what, CancellationToken ct)
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
