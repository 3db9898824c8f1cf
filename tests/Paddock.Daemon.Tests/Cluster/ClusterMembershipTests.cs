using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json.Nodes;
using Npgsql;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Tests.Store;
using Xunit.Abstractions;
using static Paddock.Daemon.Tests.Cluster.ClusterCalls;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// Three real paddockd processes in cluster mode, each in its own network namespace (ClusterNetwork), on one real
/// PostgreSQL (the store fixture), creating real runc sandboxes, two slots per node: creates through one node spread
/// over all three by free slots, a full cluster answers 429, another node's sandbox is reachable through any node's
/// API and proxy, a SIGKILLed node is declared dead and its sandboxes are marked lost (404 everywhere, the reason in
/// their records), creates then go to the survivors, and the node restarted under the same id rejoins, destroys what
/// it left running and takes creates again. Teams and keys changed through one node hold on every node at once; a
/// create with a key that does not authenticate is refused before placement; a dashboard session on one node acts on
/// another node's sandbox. The lists are the cluster's through any node: the API's, the batch metrics listing (by
/// team) and the dashboard's.
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
        string[] names = ["a", "b", "c"];
        await WithNodesAsync(names, (name, i) => new ClusterNode(name, i, network.NodeNamespaces[i], fixture.Server.StoreUri(database), apiKey, ProbeTimeout), output, async nodes =>
        {
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

            // Teams and keys: made through A, they work through B and C at once; a limit changed through C is B's at
            // once; revoked through B, the key is refused through A and C at once. No waits: a change returns only
            // when every active node has reloaded (ClusterTeamFanout).
            using var bare = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            var team = (string)(await SendOkAsync(bare, a, HttpMethod.Post, "/teams", apiKey, $$"""{"name":"cluster-{{Guid.NewGuid():N}}"}"""))["teamID"]!;
            var madeKey = await SendOkAsync(bare, a, HttpMethod.Post, $"/admin/teams/{team}/api-keys", apiKey, """{"name":"made through a"}""");
            var (teamKey, teamKeyId) = ((string)madeKey["key"]!, (string)madeKey["id"]!);
            foreach (var node in nodes)
            {
                Assert.Empty((await SendOkAsync(bare, node, HttpMethod.Get, "/v2/sandboxes", teamKey)).AsArray());
            }
            await SendOkAsync(bare, c, HttpMethod.Patch, $"/teams/{team}", apiKey, """{"maxSandboxes":1}""");
            Assert.Equal(1, (int?)(await SendOkAsync(bare, b, HttpMethod.Get, "/teams", teamKey)).AsArray().Single()!["limits"]!["maxSandboxes"]);
            var revoking = Stopwatch.StartNew();
            using (var revoke = await SendAsync(bare, b, HttpMethod.Delete, $"/admin/teams/{team}/api-keys/{teamKeyId}", apiKey))
            {
                Assert.Equal(HttpStatusCode.NoContent, revoke.StatusCode);
            }
            output.WriteLine($"a key revoked through B, both other nodes reloaded: {revoking.Elapsed.TotalMilliseconds:F0} ms");
            foreach (var node in nodes)
            {
                using var refused = await SendAsync(bare, node, HttpMethod.Get, "/v2/sandboxes", teamKey);
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            }

            // A create with a key that does not authenticate is refused by the node it reached, before placement: a
            // 401 from A, no record, and no other node saw it (a create placed on B or C would be refused there, in
            // its log; with three free nodes each of these four would land elsewhere with odds 1/3).
            foreach (var key in new[] { "e2b_" + new string('0', 40), teamKey, "e2b_" + new string('1', 40), teamKey })
            {
                using var refused = await SendAsync(bare, a, HttpMethod.Post, "/sandboxes", key, """{"templateID":"base"}""");
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            }
            Assert.Equal(0L, await CountSandboxesAsync(database, ct));
            await UntilAsync(() => Task.FromResult(a.Log.Contains("Refused POST /sandboxes", StringComparison.Ordinal)), TimeSpan.FromSeconds(10), "A to log its refusals", ct);
            Assert.DoesNotContain("Refused POST /sandboxes", b.Log, StringComparison.Ordinal);
            Assert.DoesNotContain("Refused POST /sandboxes", c.Log, StringComparison.Ordinal);

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
            // A full cluster tells a caller without a valid key nothing about its load: 401, not 429.
            using (var refused = await SendAsync(bare, c, HttpMethod.Post, "/sandboxes", teamKey, """{"templateID":"base"}"""))
            {
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
            }
            // The list through any node is the cluster's: C lists the sandboxes on A, B and C, in both API versions.
            var all = created.Select(s => s.Id).Order(StringComparer.Ordinal).ToList();
            Assert.Equal(all, await ListedIdsAsync(c, "/v2/sandboxes", ct));
            Assert.Equal(all, await ListedIdsAsync(c, "/sandboxes", ct));
            // So is the batch metrics listing: C asks A and B for theirs (each checks the key and the team itself) and
            // answers with its own; an unknown id is left out, as on a single daemon.
            var idList = string.Join(',', all);
            var listing = Stopwatch.StartNew();
            var metrics = (await SendOkAsync(bare, c, HttpMethod.Get, $"/sandboxes/metrics?sandbox_ids={idList},doesnotexist00000000", apiKey))["sandboxes"]!.AsObject();
            output.WriteLine($"metrics listing of six sandboxes on three nodes through C: {listing.Elapsed.TotalMilliseconds:F0} ms");
            Assert.Equal(all, metrics.Select(m => m.Key).Order(StringComparer.Ordinal));
            Assert.All(metrics, m =>
            {
                Assert.True((long)m.Value!["memUsed"]! > 0, $"memUsed of {m.Key} (on {owners[m.Key]}): {m.Value}");
                Assert.True((long)m.Value["memTotal"]! > 0, $"memTotal of {m.Key} (on {owners[m.Key]}): {m.Value}");
                Assert.True((long)m.Value["timestampUnix"]! > 1_700_000_000, $"timestampUnix of {m.Key}: {m.Value}");
            });
            // Another team's key gets none of them through C, neither C's own nor the other nodes' (their owners refuse
            // them by team as C does its own).
            var otherTeamKey = (string)(await SendOkAsync(bare, a, HttpMethod.Post, $"/admin/teams/{team}/api-keys", apiKey, """{"name":"another team's"}"""))["key"]!;
            Assert.Empty((await SendOkAsync(bare, c, HttpMethod.Get, $"/sandboxes/metrics?sandbox_ids={idList}", otherTeamKey))["sandboxes"]!.AsObject());
            // A asks each node's grain, which runs on that node's silo only and answers from that node's memory.
            Assert.All(await a.NodesAsync(ct), n => Assert.Equal(ClusterNode.MaxSandboxes, (int?)n!["reserved"]));
            // Its capacity for placement too: its CPUs and the default 2 CPUs and 512 MiB promised to each of its two
            // sandboxes, its host's available memory, its tiers, and (within the set's 10 s refresh) the template.
            Assert.All(await a.NodesAsync(ct), n =>
            {
                Assert.Equal((Environment.ProcessorCount, 2 * ClusterNode.MaxSandboxes, 512L * ClusterNode.MaxSandboxes),
                    ((int?)n!["cpus"], (int?)n["cpusPromised"], (long?)n["memoryPromisedMB"]));
                Assert.True((long?)n["memoryAvailableMB"] > 0 && (long?)n["memoryTotalMB"] > 0, n.ToJsonString());
                Assert.Contains("runc", n["tiers"]!.AsArray().Select(t => (string?)t));
            });
            await UntilAsync(async () => (await a.NodesAsync(ct)).All(n => n!["templates"]!.AsArray().Any(t => (string?)t == "base")),
                TimeSpan.FromSeconds(30), "every node to report the base template present", ct);

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
            // Files through C: a script uploaded to B's sandbox through C's proxy, read back through C and run through A;
            // it is a WebSocket echo server on port 8080, reached through C (the upgrade and both directions forwarded).
            await PutFileAsync(c, onB, tokenB, "/tmp/ws-echo.py", WebSocketEcho, ct);
            Assert.Equal(WebSocketEcho, await GetFileAsync(c, onB, tokenB, "/tmp/ws-echo.py", ct));
            Assert.Equal((0, "listening\n"), await DaemonCommands.RunAsync(a.Api, onB, tokenB,
                "nohup python3 /tmp/ws-echo.py </dev/null >/tmp/ws-echo.log 2>&1 & " +
                "for i in $(seq 100); do grep -q ':1F90 00000000:0000 0A' /proc/net/tcp && echo listening && break; sleep 0.1; done"));
            using (var socket = new ClientWebSocket())
            {
                socket.Options.SetRequestHeader("E2b-Sandbox-Id", onB);
                socket.Options.SetRequestHeader("E2b-Sandbox-Port", "8080");
                await socket.ConnectAsync(new Uri($"ws://{c.Api.BaseAddress!.Authority}/echo"), ct);
                foreach (var text in (string[])["through c", "and back again"])
                {
                    await socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, ct);
                    var buffer = new byte[256];
                    var received = await socket.ReceiveAsync(buffer, ct);
                    Assert.Equal(text, Encoding.UTF8.GetString(buffer, 0, received.Count));
                }
                await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", ct);
            }
            // A dashboard session on C (in C's memory only) acts on B's sandbox: C checks the cookie and the CSRF token
            // and forwards the session's key instead of the cookie.
            var (session, csrf) = await SignInAsync(bare, c, apiKey, ct);
            // The dashboard's list through C shows the sandboxes of every node, each row naming its node; the host view
            // is C's own and says so. The metrics listing by the session's key answers for every node's too.
            using (var list = await SendAsync(bare, c, HttpMethod.Get, "/dashboard/api/sandboxes", key: null, cookie: session))
            {
                var body = await list.Content.ReadAsStringAsync(ct);
                Assert.True(list.StatusCode == HttpStatusCode.OK, $"dashboard list through C: {(int)list.StatusCode} {body}");
                var rows = JsonNode.Parse(body)!.AsArray();
                Assert.Equal(all, rows.Select(r => (string)r!["sandboxID"]!).Order(StringComparer.Ordinal));
                Assert.All(rows, r => Assert.Equal(owners[(string)r!["sandboxID"]!], (string?)r["nodeID"]));
            }
            using (var host = await SendAsync(bare, c, HttpMethod.Get, "/dashboard/api/host", key: null, cookie: session))
            {
                Assert.Equal("c", (string?)JsonNode.Parse(await host.Content.ReadAsStringAsync(ct))!["nodeID"]);
            }
            using (var bySession = await SendAsync(bare, c, HttpMethod.Get, $"/sandboxes/metrics?sandbox_ids={idList}", key: null, cookie: session))
            {
                var body = await bySession.Content.ReadAsStringAsync(ct);
                Assert.True(bySession.StatusCode == HttpStatusCode.OK, $"metrics listing by a dashboard session through C: {(int)bySession.StatusCode} {body}");
                Assert.Equal(all, JsonNode.Parse(body)!["sandboxes"]!.AsObject().Select(m => m.Key).Order(StringComparer.Ordinal));
            }
            using (var detail = await SendAsync(bare, c, HttpMethod.Get, $"/sandboxes/{onB}", key: null, cookie: session))
            {
                Assert.Equal(HttpStatusCode.OK, detail.StatusCode);
            }
            using (var extend = await SendAsync(bare, c, HttpMethod.Post, $"/dashboard/api/sandboxes/{onB}/timeout", key: null, """{"timeout":300}""", session, csrf))
            {
                Assert.Equal(HttpStatusCode.NoContent, extend.StatusCode);
            }
            using (var noCsrf = await SendAsync(bare, c, HttpMethod.Post, $"/dashboard/api/sandboxes/{onB}/timeout", key: null, """{"timeout":300}""", session))
            {
                Assert.Equal(HttpStatusCode.Forbidden, noCsrf.StatusCode);
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
        }, ct);
    }

    /// <summary>
    /// A WebSocket echo server for one sandbox port (8080), in Python's standard library only (the base template has no
    /// WebSocket package): the RFC 6455 handshake, then each unfragmented masked text frame under 126 bytes sent back.
    /// </summary>
    private const string WebSocketEcho = """
        import base64, hashlib, socket
        GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("0.0.0.0", 8080))
        server.listen(4)
        def read(conn, n):
            data = b""
            while len(data) < n:
                more = conn.recv(n - len(data))
                if not more:
                    raise EOFError
                data += more
            return data
        def serve(conn):
            request = b""
            while b"\r\n\r\n" not in request:
                more = conn.recv(4096)
                if not more:
                    return
                request += more
            key = [l.split(b":", 1)[1].strip() for l in request.split(b"\r\n") if l.lower().startswith(b"sec-websocket-key:")][0]
            accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            while True:
                head = read(conn, 2)
                mask = read(conn, 4)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(read(conn, head[1] & 127)))
                if head[0] & 15 == 8:
                    conn.sendall(b"\x88\x00")
                    return
                conn.sendall(bytes([0x81, len(payload)]) + payload)
        while True:
            conn, _ = server.accept()
            try:
                serve(conn)
            except (EOFError, OSError, IndexError):
                pass
            conn.close()
        """;

    /// <summary>Writes a file into a sandbox through <paramref name="node"/>'s proxy (envd's /files, octet-stream).</summary>
    private static async Task PutFileAsync(ClusterNode node, string sandboxId, string? token, string path, string text, CancellationToken ct)
    {
        using var request = EnvdRequest(HttpMethod.Post, sandboxId, token, path);
        request.Content = new StringContent(text, Encoding.UTF8, "application/octet-stream");
        using var response = await node.Api.SendAsync(request, ct);
        Assert.True(response.IsSuccessStatusCode, $"upload through {node.NodeId}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync(ct)}");
    }

    /// <summary>Reads a file of a sandbox through <paramref name="node"/>'s proxy.</summary>
    private static async Task<string> GetFileAsync(ClusterNode node, string sandboxId, string? token, string path, CancellationToken ct)
    {
        using var request = EnvdRequest(HttpMethod.Get, sandboxId, token, path);
        using var response = await node.Api.SendAsync(request, ct);
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.IsSuccessStatusCode, $"download through {node.NodeId}: {(int)response.StatusCode} {body}");
        return body;
    }

    private static HttpRequestMessage EnvdRequest(HttpMethod method, string sandboxId, string? token, string path)
    {
        var request = new HttpRequestMessage(method, "/files?path=" + Uri.EscapeDataString(path));
        request.Headers.Add("E2b-Sandbox-Id", sandboxId);
        request.Headers.Add("E2b-Sandbox-Port", "49983");
        if (token is not null)
        {
            request.Headers.Add("X-Access-Token", token);
        }
        return request;
    }

    /// <summary>A request to <paramref name="node"/> with the given key (or none), dashboard cookie and CSRF token.</summary>
    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, ClusterNode node, HttpMethod method, string path, string? key,
        string? json = null, string? cookie = null, string? csrf = null)
    {
        using var request = new HttpRequestMessage(method, new Uri(node.Api.BaseAddress!, path));
        if (key is not null)
        {
            request.Headers.Add("X-API-Key", key);
        }
        if (cookie is not null)
        {
            request.Headers.Add("Cookie", cookie);
        }
        if (csrf is not null)
        {
            request.Headers.Add("X-Paddock-Csrf", csrf);
        }
        if (json is not null)
        {
            request.Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        return await client.SendAsync(request, timeout.Token);
    }

    /// <summary>As <see cref="SendAsync"/>, asserting a success; the body as JSON.</summary>
    private static async Task<JsonNode> SendOkAsync(HttpClient client, ClusterNode node, HttpMethod method, string path, string key, string? json = null)
    {
        using var response = await SendAsync(client, node, method, path, key, json);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path} through {node.NodeId}: {(int)response.StatusCode} {body}");
        return JsonNode.Parse(body)!;
    }

    /// <summary>Signs in to the node's dashboard; the cookie (name=value) and the CSRF token.</summary>
    private static async Task<(string Cookie, string Csrf)> SignInAsync(HttpClient client, ClusterNode node, string key, CancellationToken ct)
    {
        using var response = await SendAsync(client, node, HttpMethod.Post, "/dashboard/api/session", key: null, $$"""{"apiKey":"{{key}}"}""");
        var body = await response.Content.ReadAsStringAsync(ct);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"dashboard sign-in through {node.NodeId}: {(int)response.StatusCode} {body}");
        var cookie = response.Headers.GetValues("Set-Cookie").Single().Split(';')[0];
        return (cookie, (string)JsonNode.Parse(body)!["csrf"]!);
    }

    private async Task<long> CountSandboxesAsync(string database, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(fixture.Server.ConnectionString(database));
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand("SELECT count(*) FROM sandboxes", connection);
        return (long)(await command.ExecuteScalarAsync(ct))!;
    }

    private async Task<string?> NodeOfAsync(string database, string sandboxId, CancellationToken ct) =>
        await ClusterCalls.NodeOfAsync(fixture.Server.ConnectionString(database), sandboxId, ct);

    private async Task<string?> StateOfAsync(string database, string sandboxId, CancellationToken ct) =>
        await ClusterCalls.StateOfAsync(fixture.Server.ConnectionString(database), sandboxId, ct);

}
