using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// One real paddockd in cluster mode inside a network namespace of its own, started with <c>nsenter --net</c> (so its
/// /sys is still the host's): three sandboxes one after another, each answering a command through the proxy and
/// then killed, so that each create takes the slot (and the host-end veth name) the last one freed. Before the fix in
/// SandboxNetworks (it asked /sys/class/net whether the killed sandbox's veth was still there, and /sys showed the
/// host's links, so the veth was never deleted) the second create failed with "create veth ... File exists"
/// (found by bench/run cluster).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterNodeSlotReuseTests(PostgresFixture fixture)
{
    [Fact]
    public async Task A_node_in_its_own_network_namespace_gives_a_killed_sandboxs_slot_to_the_next_create()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(4));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];
        await using var network = await ClusterNetwork.CreateAsync(1, ct);
        await using var node = new ClusterNode("a", 0, network.NodeNamespaces[0], fixture.Server.StoreUri(database), apiKey, TimeSpan.FromSeconds(1));
        await node.StartAsync(ct);
        // Bounded: placement asks the active nodes, so the node must see itself active first.
        for (var attempt = 0; (await node.NodesAsync(ct)).All(n => (string?)n!["status"] != "active"); attempt++)
        {
            Assert.True(attempt < 300, $"the node did not see itself active:\n{node.Log}");
            await Task.Delay(200, ct);
        }
        for (var i = 0; i < 3; i++)
        {
            using var response = await node.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base", ["timeout"] = 300 }, ct);
            var body = await response.Content.ReadAsStringAsync(ct);
            Assert.True(response.StatusCode == HttpStatusCode.Created, $"create {i + 1}: {(int)response.StatusCode} {body}");
            var created = JsonNode.Parse(body)!;
            var id = (string)created["sandboxID"]!;
            Assert.Equal((0, "hi\n"), await DaemonCommands.RunAsync(node.Api, id, (string?)created["envdAccessToken"], "echo hi"));
            using var killed = await node.Api.DeleteAsync($"/sandboxes/{id}", ct);
            Assert.Equal(HttpStatusCode.NoContent, killed.StatusCode);
        }
    }
}
