using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Paddock.Daemon.Cluster;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;
using Xunit.Abstractions;
using static Paddock.Daemon.Tests.Cluster.ClusterCalls;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// Thirty real creates over three real nodes of unequal size (16, 2 and 12 sandbox slots: 30 in all), sent one after
/// another through each node in turn. Placement chooses by each node's free capacity as a share of its own size, so
/// every create is checked against the reports read just before it: it never goes to the node that is strictly the
/// fullest of those with a free slot (best-of-2 of three nodes cannot choose it; a rule by free slots counted alone
/// would, since the 16-slot node keeps the most free slots while it fills). Once the small node is full, creates sent
/// through it run on the others; when all thirty slots are taken, a create through any node is a 429 that says so.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterCapacityTests(PostgresFixture fixture, ITestOutputHelper output)
{
    private static readonly (string Name, int Slots)[] Nodes = [("a", 16), ("b", 2), ("c", 12)];

    [Fact]
    public async Task Thirty_creates_fill_three_unequal_nodes_by_their_free_share_avoid_a_full_node_and_then_get_429()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var connection = fixture.Server.ConnectionString(database);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];
        var total = Nodes.Sum(n => n.Slots);

        await using var network = await ClusterNetwork.CreateAsync(Nodes.Length, ct);
        await WithNodesAsync([.. Nodes.Select(n => n.Name)], (name, i) => new ClusterNode(name, i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, TimeSpan.FromSeconds(1), Nodes[i].Slots), output, async nodes =>
        {
            var small = nodes.Single(n => n.NodeId == "b");

            var placed = Nodes.ToDictionary(n => n.Name, _ => 0, StringComparer.Ordinal);
            var sentThroughFullSmall = 0;
            for (var i = 0; i < total; i++)
            {
                // Through each node in turn; once the small node is full, the next create goes through it once.
                var through = placed["b"] == 2 && sentThroughFullSmall == 0 ? small : nodes[i % nodes.Count];
                var before = await ReportsAsync(through, ct);
                Assert.All(before, r => Assert.Equal(placed[r.NodeId], r.Reserved));
                var (id, _) = await CreateAsync(through, ct);
                var node = (await NodeOfAsync(connection, id, ct))!;
                placed[node]++;
                if (through == small && placed["b"] == 2 && node != "b")
                {
                    sentThroughFullSmall++;
                }

                var open = before.Where(r => r.Reserved < r.MaxSandboxes).ToList();
                var chosen = open.Single(r => r.NodeId == node);
                var others = open.Where(r => r != chosen).ToList();
                var shares = string.Join(", ", open.Select(r => $"{r.NodeId} {r.Reserved}/{r.MaxSandboxes} free {ClusterPlacement.FreeCapacity(r):F3}"));
                output.WriteLine($"create {i + 1} through {through.NodeId} → {node} ({shares})");
                // The memory share in the figure is the host's, read by each node a moment apart: a few MiB of 24 GiB.
                Assert.False(others.Count > 0 && others.All(o => ClusterPlacement.FreeCapacity(o) > ClusterPlacement.FreeCapacity(chosen) + 0.005),
                    $"create {i + 1} went to {node}, the fullest node with a free slot ({shares})");
            }

            Assert.Equal(Nodes.ToDictionary(n => n.Name, n => n.Slots, StringComparer.Ordinal), placed);
            Assert.True(sentThroughFullSmall >= 1, "no create went through the small node once it was full");
            Assert.Equal((long)total, await ScalarAsync(connection, "SELECT count(*) FROM sandboxes WHERE state = 'running'", ct));
            foreach (var (name, slots) in Nodes)
            {
                Assert.Equal((long)slots, await ScalarAsync(connection, $"SELECT count(*) FROM sandboxes WHERE node_id = '{name}'", ct));
            }

            foreach (var node in nodes)
            {
                using var full = await node.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base" }, ct);
                var body = await full.Content.ReadAsStringAsync(ct);
                Assert.True(full.StatusCode == HttpStatusCode.TooManyRequests, $"create {total + 1} through {node.NodeId}: {(int)full.StatusCode} {body}");
                Assert.Contains("every node of the cluster already runs its maximum", body, StringComparison.Ordinal);
            }
            Assert.Equal((long)total, await ScalarAsync(connection, "SELECT count(*) FROM sandboxes", ct));
        }, ct);
    }

    /// <summary>Every node's report as <paramref name="through"/>'s <c>/cluster/nodes</c> gives it: what placement reads.</summary>
    private static async Task<List<NodeReport>> ReportsAsync(ClusterNode through, CancellationToken ct) =>
        [.. (await through.NodesAsync(ct)).Select(n => new NodeReport
        {
            NodeId = (string)n!["nodeID"]!,
            SiloAddress = (string)n["silo"]!,
            Reserved = (int)n["reserved"]!,
            MaxSandboxes = (int)n["maxSandboxes"]!,
            Cpus = (int?)n["cpus"] ?? 0,
            CpusPromised = (int?)n["cpusPromised"] ?? 0,
            MemoryTotalMB = (long?)n["memoryTotalMB"] ?? 0,
            MemoryAvailableMB = (long?)n["memoryAvailableMB"],
        })];
}
