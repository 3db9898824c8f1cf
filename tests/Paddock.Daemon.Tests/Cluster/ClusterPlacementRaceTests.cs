using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;
using Xunit.Abstractions;
using static Paddock.Daemon.Tests.Cluster.ClusterCalls;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// Two real paddockd nodes (two slots each) racing creates for a node's last slots: one node X runs a sandbox, the
/// other, Y, none; three creates sent through X at once are all placed from reports that say Y is the emptier, so
/// Y's two slots go to two of them and the third loses Y's race. That one is not answered Y's 429: X places it once
/// more, on X's own free slot. All three succeed, two on Y and one on X, and no sandbox is made twice. Whether a
/// create really lost a race depends on timing (a create whose reports were read after Y's reservations is placed
/// on X directly); the test prints how many did, from the nodes' logs.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterPlacementRaceTests(PostgresFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task A_create_that_loses_the_race_for_a_node_s_last_slot_is_placed_once_more_on_another_node()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];

        await using var network = await ClusterNetwork.CreateAsync(2, ct);
        string[] names = ["a", "b"];
        await WithNodesAsync(names, (name, i) => new ClusterNode(name, i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, TimeSpan.FromSeconds(1)), output, async nodes =>
        {
            var first = await CreateAsync(nodes[0], ct);
            Assert.Equal(HttpStatusCode.Created, first.Status);
            var x = nodes.Single(n => n.NodeId == first.Node);
            var y = nodes.Single(n => n != x);
            await UntilAsync(async () => (await x.NodesAsync(ct)).Any(n => (string?)n!["nodeID"] == x.NodeId && (int?)n["reserved"] == 1),
                TimeSpan.FromSeconds(30), "X to report its sandbox", ct);

            var racing = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => CreateAsync(x, ct)));
            foreach (var r in racing)
            {
                Assert.True(r.Status == HttpStatusCode.Created, $"a racing create through {x.NodeId}: {(int)r.Status} {r.Body}");
            }
            Assert.Equal(2, racing.Count(r => r.Node == y.NodeId));
            Assert.Equal(1, racing.Count(r => r.Node == x.NodeId));
            Assert.Equal(4L, await ScalarAsync(fixture.Server.ConnectionString(database), "SELECT count(*) FROM sandboxes", ct));
            var retried = nodes.Sum(n => CountOf(n.Log, "lost the race for its last sandbox slot"));
            output.WriteLine($"three creates at once through {x.NodeId} for one free slot there and two on {y.NodeId}: all placed; {retried} lost {y.NodeId}'s race and were placed once more");

            // The cluster is full now: the next create is refused at placement, with the message that says so.
            using var full = await y.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base" }, ct);
            Assert.Equal(HttpStatusCode.TooManyRequests, full.StatusCode);
            Assert.Contains("every node of the cluster already runs its maximum", await full.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }, ct);

        async Task<(HttpStatusCode Status, string Body, string? Node)> CreateAsync(ClusterNode through, CancellationToken cancellationToken)
        {
            using var response = await through.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base", ["timeout"] = 300 }, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            var node = response.StatusCode == HttpStatusCode.Created
                ? (string?)await ScalarAsync(fixture.Server.ConnectionString(database), "SELECT node_id FROM sandboxes WHERE sandbox_id = @id", cancellationToken, (string)JsonNode.Parse(body)!["sandboxID"]!)
                : null;
            return (response.StatusCode, body, node);
        }
    }

}
