using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Xunit.Abstractions;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>What the cluster tests ask of their nodes and of the store, in one place (imported with <c>using static</c>).</summary>
internal static class ClusterCalls
{
    /// <summary>
    /// Starts the first node alone (it runs the schema steps and makes the cluster's version row), then the others
    /// together, and waits (bounded) until every node sees all of them active.
    /// </summary>
    public static async Task StartAllAsync(IReadOnlyList<ClusterNode> nodes, CancellationToken ct)
    {
        await nodes[0].StartAsync(ct);
        await Task.WhenAll(nodes.Skip(1).Select(n => n.StartAsync(ct)));
        foreach (var node in nodes)
        {
            await UntilAsync(async () => (await node.NodesAsync(ct)).Count(n => (string?)n!["status"] == "active") == nodes.Count,
                TimeSpan.FromSeconds(60), $"node {node.NodeId} to see {nodes.Count} active nodes", ct);
        }
    }

    /// <summary>
    /// Makes a node per name (<paramref name="make"/> gets the name and its index), starts them all
    /// (<see cref="StartAllAsync"/>) and runs <paramref name="body"/> on them. When anything fails, every node's log goes
    /// to the test's output first; every node made is stopped and cleaned up after in any case.
    /// </summary>
    public static async Task WithNodesAsync(IReadOnlyList<string> names, Func<string, int, ClusterNode> make, ITestOutputHelper output,
        Func<IReadOnlyList<ClusterNode>, Task> body, CancellationToken ct)
    {
        var nodes = new List<ClusterNode>();
        try
        {
            for (var i = 0; i < names.Count; i++)
            {
                nodes.Add(make(names[i], i));
            }
            await StartAllAsync(nodes, ct);
            await body(nodes);
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

    /// <summary>A <c>base</c> sandbox created through <paramref name="node"/> (placement decides where it runs).</summary>
    public static async Task<(string Id, string? Token)> CreateAsync(ClusterNode node, CancellationToken ct, int timeoutSeconds = 300)
    {
        using var response = await node.Api.PostAsJsonAsync("/sandboxes", new JsonObject { ["templateID"] = "base", ["timeout"] = timeoutSeconds }, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.Created, $"create through {node.NodeId}: {(int)response.StatusCode} {body}");
        var created = JsonNode.Parse(body)!;
        return ((string)created["sandboxID"]!, (string?)created["envdAccessToken"]);
    }

    /// <summary>The sandbox ids a list endpoint of <paramref name="node"/> answers, sorted.</summary>
    public static async Task<List<string>> ListedIdsAsync(ClusterNode node, string path, CancellationToken ct) =>
        [.. (await node.Api.GetFromJsonAsync<JsonArray>(path, ct))!.Select(s => (string)s!["sandboxID"]!).Order(StringComparer.Ordinal)];

    /// <summary>The node a sandbox's record names, read from the store itself.</summary>
    public static async Task<string?> NodeOfAsync(string connectionString, string sandboxId, CancellationToken ct) =>
        (string?)await ScalarAsync(connectionString, "SELECT node_id FROM sandboxes WHERE sandbox_id = @id", ct, sandboxId);

    /// <summary>The state a sandbox's record holds, read from the store itself.</summary>
    public static async Task<string?> StateOfAsync(string connectionString, string sandboxId, CancellationToken ct) =>
        (string?)await ScalarAsync(connectionString, "SELECT state FROM sandboxes WHERE sandbox_id = @id", ct, sandboxId);

    /// <summary>One value from the store; <paramref name="sandboxId"/> is the query's <c>@id</c> when given.</summary>
    public static async Task<object?> ScalarAsync(string connectionString, string sql, CancellationToken ct, string? sandboxId = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(sql, connection);
        if (sandboxId is not null)
        {
            command.Parameters.AddWithValue("id", sandboxId);
        }
        return await command.ExecuteScalarAsync(ct);
    }

    /// <summary>How many times <paramref name="piece"/> occurs in <paramref name="text"/> (a log, say), not overlapping.</summary>
    public static int CountOf(string text, string piece)
    {
        var count = 0;
        for (var at = text.IndexOf(piece, StringComparison.Ordinal); at >= 0; at = text.IndexOf(piece, at + piece.Length, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }

    /// <summary>Polls every 200 ms until <paramref name="condition"/> holds; throws after <paramref name="limit"/>.</summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, TimeSpan limit, string what, CancellationToken ct)
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
                throw new TimeoutException($"waited {limit.TotalSeconds:F0} s for {what}");
            }
            await Task.Delay(200, ct);
        }
    }
}
