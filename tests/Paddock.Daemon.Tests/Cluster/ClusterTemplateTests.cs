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
/// Templates across nodes, on three real paddockd in cluster mode (own state directories, so a node's layers are its
/// own) on a real PostgreSQL: a snapshot taken on A exists only in A's layers directory; two creates of it on B
/// (placed there) fetch its layer from A once, verified against the digest A recorded, and run from it; the layer
/// endpoint refuses callers without a key and callers that are not a node; when every holder's copy is corrupted, a
/// create on C fails with a 503 that names the digest mismatch and leaves nothing in C's layers; a delete through C
/// removes the copies on A and B and the store's rows.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterTemplateTests(PostgresFixture fixture, ITestOutputHelper output)
{
    private const string Forwarded = "X-Paddock-Forwarded-By";

    [Fact]
    public async Task A_template_made_on_one_node_is_fetched_verified_by_another_and_deleted_everywhere()
    {
        TestEnvironment.RequireRootAndRunc();
        await TestEnvironment.BaseTemplateAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(6));
        var ct = timeout.Token;
        var database = await fixture.Server.CreateDatabaseAsync(ct);
        var apiKey = "e2b_" + Guid.NewGuid().ToString("N") + Guid.NewGuid().ToString("N")[..8];

        await using var network = await ClusterNetwork.CreateAsync(3, ct);
        string[] names = ["a", "b", "c"];
        await WithNodesAsync(names, (name, i) => new ClusterNode(name, i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, TimeSpan.FromSeconds(1)), output, async nodes =>
        {
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

            // A snapshot on A: its one new layer is in A's layers directory only.
            var (onA, tokenA) = await CreateOnAsync(a, "base", ct);
            Assert.Equal((0, ""), await DaemonCommands.RunAsync(a.Api, onA, tokenA, "mkdir -p /opt && echo across-nodes > /opt/marker", user: "root"));
            string templateId;
            using (var snapshot = await a.Api.PostAsync($"/sandboxes/{onA}/snapshots", JsonContent.Create(new JsonObject()), ct))
            {
                var body = await snapshot.Content.ReadAsStringAsync(ct);
                Assert.True(snapshot.StatusCode == HttpStatusCode.Created, $"snapshot on A: {(int)snapshot.StatusCode} {body}");
                templateId = (string)JsonNode.Parse(body)!["snapshotID"]!;
            }
            await KillAsync(a, onA, ct);
            Assert.True(File.Exists(Path.Combine(a.StateDir, "layers", templateId, "opt", "marker")), "the snapshot's layer on A");
            Assert.All([b, c], n => Assert.False(Directory.Exists(Path.Combine(n.StateDir, "layers", templateId)), $"a copy on {n.NodeId} before any create"));
            Assert.Equal(["a"], await HoldersAsync(database, templateId, ct));

            // Two creates of it on B at once: one fetch from A (or one create finds the other's), verified, and both run.
            var fetching = Stopwatch.StartNew();
            var onB = await Task.WhenAll(CreateOnAsync(b, templateId, ct), CreateOnAsync(b, templateId, ct));
            output.WriteLine($"two creates on B of a template held only by A (one layer fetch): {fetching.Elapsed.TotalMilliseconds:F0} ms");
            foreach (var (id, token) in onB)
            {
                Assert.Equal((0, "across-nodes\n"), await DaemonCommands.RunAsync(b.Api, id, token, "cat /opt/marker"));
            }
            var copyOnB = Path.Combine(b.StateDir, "layers", templateId);
            Assert.Equal("across-nodes\n", File.ReadAllText(Path.Combine(copyOnB, "opt", "marker")));
            Assert.Equal(1, CountOf(b.Log, $"layer {templateId} of template {templateId} fetched from node a, verified (sha256:"));
            var fetched = b.Log.Split('\n').First(l => l.Contains($"layer {templateId} of template {templateId} fetched", StringComparison.Ordinal));
            output.WriteLine(fetched.Trim());
            Assert.Equal(["a", "b"], await HoldersAsync(database, templateId, ct));
            Assert.Empty(Directory.GetDirectories(Path.Combine(b.StateDir, "layers"), ".fetch-*"));

            // The layer endpoint: no key, 401; a key but no node (the test host, naming node b), 403 either way.
            using var bare = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            var layerUrl = new Uri(a.Api.BaseAddress!, $"/cluster/layers/{templateId}?template={templateId}");
            foreach (var (key, from, expected) in new (string?, string?, HttpStatusCode)[]
            {
                (null, "b", HttpStatusCode.Unauthorized),
                (apiKey, null, HttpStatusCode.Forbidden),
                (apiKey, "b", HttpStatusCode.Forbidden),
            })
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, layerUrl);
                if (key is not null)
                {
                    request.Headers.Add("X-API-Key", key);
                }
                if (from is not null)
                {
                    request.Headers.Add(Forwarded, from);
                }
                using var response = await bare.SendAsync(request, ct);
                Assert.True(expected == response.StatusCode, $"layer request from the test host (key: {key is not null}, as: {from}): {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
                Assert.NotEqual("application/x-tar", response.Content.Headers.ContentType?.MediaType);
            }

            // Every holder's copy changed behind the store's back: C refuses what it receives, and keeps nothing.
            foreach (var (id, _) in onB)
            {
                await KillAsync(b, id, ct);
            }
            foreach (var holder in new[] { a, b })
            {
                File.AppendAllText(Path.Combine(holder.StateDir, "layers", templateId, "opt", "marker"), "tampered\n");
            }
            using (var refused = await CreateRequestOnAsync(c, templateId, ct))
            {
                var body = await refused.Content.ReadAsStringAsync(ct);
                Assert.True(refused.StatusCode == HttpStatusCode.ServiceUnavailable, $"create on C from corrupted copies: {(int)refused.StatusCode} {body}");
                Assert.Contains("as recorded when the layer was made; nothing was kept", body, StringComparison.Ordinal);
                output.WriteLine($"create on C from corrupted copies: {(int)refused.StatusCode} {body}");
            }
            var layersOfC = Path.Combine(c.StateDir, "layers");
            Assert.False(Directory.Exists(Path.Combine(layersOfC, templateId)));
            Assert.True(!Directory.Exists(layersOfC) || Directory.GetDirectories(layersOfC, ".fetch-*").Length == 0, "a staging directory left on C");
            Assert.Equal(["a", "b"], await HoldersAsync(database, templateId, ct));

            // A delete through C (which never held it) removes A's and B's copies and the rows.
            using (var deleted = await c.Api.DeleteAsync($"/templates/{templateId}", ct))
            {
                Assert.True(deleted.StatusCode == HttpStatusCode.NoContent, $"delete through C: {(int)deleted.StatusCode} {await deleted.Content.ReadAsStringAsync(ct)}");
            }
            Assert.All([a, b], n => Assert.False(Directory.Exists(Path.Combine(n.StateDir, "layers", templateId)), $"{n.NodeId}'s copy after the delete"));
            Assert.Empty(await HoldersAsync(database, templateId, ct));
        }, ct);
    }

    /// <summary>A create that <paramref name="node"/> handles itself (the router places only requests not already forwarded).</summary>
    private static async Task<HttpResponseMessage> CreateRequestOnAsync(ClusterNode node, string template, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/sandboxes")
        {
            Content = JsonContent.Create(new JsonObject { ["templateID"] = template, ["timeout"] = 300 }),
        };
        request.Headers.Add(Forwarded, "test");
        return await node.Api.SendAsync(request, ct);
    }

    private static async Task<(string Id, string? Token)> CreateOnAsync(ClusterNode node, string template, CancellationToken ct)
    {
        using var response = await CreateRequestOnAsync(node, template, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create of {template} on {node.NodeId}: {(int)response.StatusCode} {body}");
        var created = JsonNode.Parse(body)!;
        return ((string)created["sandboxID"]!, (string?)created["envdAccessToken"]);
    }

    private static async Task KillAsync(ClusterNode node, string sandboxId, CancellationToken ct)
    {
        using var response = await node.Api.DeleteAsync($"/sandboxes/{sandboxId}", ct);
        Assert.True(response.StatusCode == HttpStatusCode.NoContent, $"kill {sandboxId} on {node.NodeId}: {(int)response.StatusCode}");
    }

    private async Task<List<string>> HoldersAsync(string database, string layer, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(fixture.Server.ConnectionString(database));
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT node_id FROM cluster_layer_holders WHERE layer = @layer ORDER BY node_id", connection);
        command.Parameters.AddWithValue("layer", layer);
        var found = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            found.Add(reader.GetString(0));
        }
        return found;
    }

}
