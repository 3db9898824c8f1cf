using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;
using Xunit.Abstractions;
using static Paddock.Daemon.Tests.Cluster.ClusterCalls;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// Three real paddockd processes in cluster mode (as ClusterMembershipTests, in their own network namespaces, on one
/// real PostgreSQL, with real runc sandboxes) through two failures, one after the other in the same cluster:
/// PostgreSQL stopped for 10 s (every node's API answers 503 with a clear message meanwhile, running sandboxes keep
/// answering commands, no node is declared dead, and everything works again afterwards with no record lost, no daemon
/// restarted); then node B cut off from A and C (A and C declare it dead; B, which still reads the membership table,
/// learns it, answers 503 saying so on its API, proxy and /health, destroys its sandboxes, and stays out until it is
/// restarted, when it rejoins).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterFailureTests(PostgresFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan Outage = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task PostgreSQL_stopped_for_10_s_answers_503_and_recovers_then_a_cut_off_node_stops_serving_and_says_so()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];
        var bound = new Daemon.Cluster.ClusterSettings { NodeId = "x", AdvertiseAddress = IPAddress.Loopback, ProbeTimeout = ProbeTimeout }.DeathDeclarationBound * 2;

        await using var network = await ClusterNetwork.CreateAsync(3, ct);
        string[] names = ["a", "b", "c"];
        await WithNodesAsync(names, (name, i) => new ClusterNode(name, i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, ProbeTimeout), output, async nodes =>
        {
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

            // Sandboxes through A until B holds one and another node holds one (bounded: B's two slots are full by then).
            var created = new List<(string Id, string? Token, string Node)>();
            while (created.Count < 3 * ClusterNode.MaxSandboxes && !(created.Any(s => s.Node == "b") && created.Any(s => s.Node != "b")))
            {
                var (id, token) = await CreateAsync(a, ct, timeoutSeconds: 600);
                created.Add((id, token, (await NodeOfAsync(database, id, ct))!));
            }
            var (kept, keptToken, keptNode) = created.First(s => s.Node != "b");
            var owner = nodes.Single(n => n.NodeId == keptNode);
            var other = nodes.First(n => n.NodeId != keptNode);
            // Through its own node and through another: the other node looks its owner up in the store here.
            Assert.Equal((0, "before\n"), await DaemonCommands.RunAsync(owner.Api, kept, keptToken, "echo before"));
            Assert.Equal((0, "before\n"), await DaemonCommands.RunAsync(other.Api, kept, keptToken, "echo before"));

            // PostgreSQL stopped for 10 s.
            var stopped = Stopwatch.StartNew();
            await fixture.Server.StopServerAsync();
            try
            {
                foreach (var node in nodes)
                {
                    // What needs the store says so, through every node: a create (placed by grain calls, which still
                    // work, then refused by the chosen node's store write), a get of an unknown sandbox, the lists.
                    await AssertStoreDownAsync(node, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""", ct);
                    await AssertStoreDownAsync(node, HttpMethod.Get, "/sandboxes/zzzzzzzzzzzzzzzzzzzz", null, ct);
                    await AssertStoreDownAsync(node, HttpMethod.Get, "/v2/sandboxes", null, ct);
                    await AssertStoreDownAsync(node, HttpMethod.Get, "/sandboxes", null, ct);
                }
                // A sandbox made before keeps running and answering: through its own node (from memory), and through
                // the other node, which forwards to the owner it last looked up (its 2 s cache has expired by now).
                Assert.Equal((0, "during\n"), await DaemonCommands.RunAsync(owner.Api, kept, keptToken, "echo during"));
                Assert.Equal((0, "during\n"), await DaemonCommands.RunAsync(other.Api, kept, keptToken, "echo during"));
                using (var detail = await owner.Api.GetAsync($"/sandboxes/{kept}", ct))
                {
                    Assert.Equal(HttpStatusCode.OK, detail.StatusCode);
                }
                var rest = Outage - stopped.Elapsed;
                if (rest > TimeSpan.Zero)
                {
                    await Task.Delay(rest, ct);
                }
                // Still 503 at the end of the outage (not a hang, not a 500), and the nodes still see each other: the
                // table could not be read or written, and nothing was declared dead for it.
                await AssertStoreDownAsync(a, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""", ct);
                Assert.Equal((0, "late\n"), await DaemonCommands.RunAsync(other.Api, kept, keptToken, "echo late"));
            }
            finally
            {
                await fixture.Server.StartServerAsync(ct);
                // The test's own pooled connections died with the server (the daemons' pools are theirs to recover).
                NpgsqlConnection.ClearAllPools();
            }
            output.WriteLine($"PostgreSQL down for {stopped.Elapsed.TotalSeconds:F1} s");

            // It recovers with no daemon restarted: a create through each node works (bounded retries while Npgsql's pool
            // drops the dead connections), every record made before is there, and no node was declared dead.
            var restarted = Stopwatch.StartNew();
            foreach (var node in nodes)
            {
                HttpStatusCode status = default;
                for (var i = 0; i < 100 && status != HttpStatusCode.OK; i++)
                {
                    using var list = await node.Api.GetAsync("/v2/sandboxes", ct);
                    status = list.StatusCode;
                    if (status != HttpStatusCode.OK)
                    {
                        await Task.Delay(200, ct);
                    }
                }
                Assert.Equal(HttpStatusCode.OK, status);
            }
            output.WriteLine($"PostgreSQL restarted to every node's list answering: {restarted.Elapsed.TotalSeconds:F1} s");
            var (afterward, _) = await CreateAsync(c, ct, timeoutSeconds: 600);
            var afterwardNode = await NodeOfAsync(database, afterward, ct);
            var all = created.Select(s => s.Id).Append(afterward).Order(StringComparer.Ordinal).ToList();
            foreach (var node in nodes)
            {
                Assert.Equal(all, await ListedIdsAsync(node, "/v2/sandboxes", ct));
                var view = await node.NodesAsync(ct);
                Assert.True(view.Count(n => (string?)n!["status"] == "active") == 3 && view.All(n => (string?)n!["status"] == "active"),
                    $"{node.NodeId}'s view after the outage: {view.ToJsonString()}");
                Assert.DoesNotContain("was declared dead:", node.Log, StringComparison.Ordinal);
            }
            foreach (var id in all)
            {
                Assert.Equal("running", await StateOfAsync(database, id, ct));
            }
            Assert.Equal((0, "after\n"), await DaemonCommands.RunAsync(other.Api, kept, keptToken, "echo after"));

            // B cut off from A and C (the test still reaches its API; it still reaches PostgreSQL): A and C declare it dead.
            var onB = created.Where(s => s.Node == "b").Select(s => s.Id).Append(afterwardNode == "b" ? afterward : null).OfType<string>().ToList();
            Assert.NotEmpty(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")));
            // Longer than a SIGKILLed node's bound: a blackholed node's every probe must time out, and both survivors
            // must vote. 12.5-15.3 s in the first three runs; past 36 s once when other test classes ran beside it.
            var cutOffBound = bound * 3;
            var cut = Stopwatch.StartNew();
            await network.CutOffAsync(1, 3, ct);
            await UntilAsync(async () => (await a.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == "b" && (string?)n["status"] == "dead")
                    && (await c.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == "b" && (string?)n["status"] == "dead"),
                cutOffBound, "A and C to declare B dead", ct);
            var declared = cut.Elapsed;
            // B learns it from the table, and says so: its API, its proxy and its /health answer 503 with why.
            await UntilAsync(async () =>
            {
                using var health = await b.Api.GetAsync("/health", ct);
                return health.StatusCode == HttpStatusCode.ServiceUnavailable;
            }, bound, "B to answer 503 on /health", ct);
            var noticed = cut.Elapsed;
            const string Evicted = "node b is no longer a member of the cluster: the other nodes declared it dead";
            using (var health = await b.Api.GetAsync("/health", ct))
            {
                Assert.Contains(Evicted, await health.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
            }
            await AssertEvictedAsync(b, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""", Evicted, ct);
            await AssertEvictedAsync(b, HttpMethod.Get, "/v2/sandboxes", null, Evicted, ct);
            await AssertEvictedAsync(b, HttpMethod.Get, $"/sandboxes/{kept}", null, Evicted, ct);
            using (var command = new HttpRequestMessage(HttpMethod.Post, "/process.Process/Start"))
            {
                command.Headers.Add("E2b-Sandbox-Id", onB[0]);
                command.Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json");
                using var response = await b.Api.SendAsync(command, ct);
                Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
                Assert.Contains(Evicted, await response.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
            }
            Assert.Contains("was declared dead by the cluster and is no longer a member", b.Log, StringComparison.Ordinal);
            // Its sandboxes, which A and C reported lost, are destroyed by B itself: nothing left on its host, and
            // their records (through A) still say lost.
            await UntilAsync(() => Task.FromResult(Directory.GetDirectories(Path.Combine(b.StateDir, "runc")).Length == 0),
                TimeSpan.FromSeconds(60), "B to destroy its sandboxes", ct);
            output.WriteLine($"B cut off to declared dead (seen by A and C): {declared.TotalSeconds:F1} s; to B answering 503: {noticed.TotalSeconds:F1} s; its {onB.Count} sandboxes destroyed by B: {cut.Elapsed.TotalSeconds:F1} s (probe timeout {ProbeTimeout.TotalSeconds} s, bound {bound.TotalSeconds} s)");
            foreach (var id in onB)
            {
                using var gone = await a.Api.GetAsync($"/sandboxes/{id}", ct);
                Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
                Assert.Contains("lost: its node b was declared dead by the cluster", (string?)(await gone.Content.ReadFromJsonAsync<JsonObject>(ct))!["message"], StringComparison.Ordinal);
                Assert.Equal("killed", await StateOfAsync(database, id, ct));
            }
            // A and C go on: the kept sandbox answers through both, and a create through C lands on A or C.
            Assert.Equal((0, "cut\n"), await DaemonCommands.RunAsync(c.Api, kept, keptToken, "echo cut"));
            Assert.Equal((0, "cut\n"), await DaemonCommands.RunAsync(a.Api, kept, keptToken, "echo cut"));

            // The network back, B stays out (it does not rejoin by itself) until it is restarted; then it rejoins.
            await network.ReconnectAsync(1, 3, ct);
            using (var health = await b.Api.GetAsync("/health", ct))
            {
                Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
            }
            await b.StopAsync();
            await b.StartAsync(ct);
            await UntilAsync(async () => (await a.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == 3,
                TimeSpan.FromSeconds(60), "A to see B active again after its restart", ct);
            using (var health = await b.Api.GetAsync("/health", ct))
            {
                Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            }
        }, ct);
    }

    private static async Task AssertStoreDownAsync(ClusterNode node, HttpMethod method, string path, string? json, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }
        using var response = await node.Api.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable && body.Contains("state database (PostgreSQL) cannot be reached", StringComparison.Ordinal),
            $"{method} {path} through {node.NodeId} with PostgreSQL down: {(int)response.StatusCode} {body}");
    }

    private static async Task AssertEvictedAsync(ClusterNode node, HttpMethod method, string path, string? json, string expected, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }
        using var response = await node.Api.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.ServiceUnavailable && body.Contains(expected, StringComparison.Ordinal),
            $"{method} {path} through cut-off {node.NodeId}: {(int)response.StatusCode} {body}");
    }

    private async Task<string?> NodeOfAsync(string database, string sandboxId, CancellationToken ct) =>
        await ClusterCalls.NodeOfAsync(fixture.Server.ConnectionString(database), sandboxId, ct);

    private async Task<string?> StateOfAsync(string database, string sandboxId, CancellationToken ct) =>
        await ClusterCalls.StateOfAsync(fixture.Server.ConnectionString(database), sandboxId, ct);

}
