using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Paddock.Bench.Daemon;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Cluster;

/// <summary>
/// The cluster's figures of issue 17, each against a baseline measured in the same run: create-to-first-output
/// through a node that does not own the sandbox against through its owner (and the owner against a single node of
/// the same settings), the proxy's added latency per hop (<c>echo</c> on one sandbox through another node against
/// through its owner), creations per second with concurrent clients on three nodes against one, and the time from a
/// node's SIGKILL to its sandbox answering 404 (lost) through another node, against the time to its declaration as
/// dead. The single node runs first and alone, then the three nodes: never both at once on the same CPUs.
/// </summary>
internal sealed partial class ClusterBench(ClusterBenchOptions options, TextWriter log)
{
    private const string SoloDatabase = "bench_solo";
    private const string ClusterDatabase = "bench_cluster";

    private readonly List<BenchNode> _running = [];
    private int _unquiet;

    /// <summary>Runs the figures; on a failure, prints the last lines of every node still known before the teardown.</summary>
    public async Task<DaemonReport> RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await RunFiguresAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            foreach (var node in _running)
            {
                log.WriteLine($"---- paddockd {node.NodeId} (last lines) ----\n{node.RecentOutput()}");
            }
            throw;
        }
    }

    private async Task<DaemonReport> RunFiguresAsync(CancellationToken cancellationToken)
    {
        var report = new DaemonReport { Bench = "cluster" };
        var apiKey = "e2b_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        await using var postgres = await BenchPostgres.StartAsync(log, cancellationToken);
        log.WriteLine($"PostgreSQL under {postgres.Root} (Unix socket only)");
        // Node i of the cluster in namespace i; the single node in the fourth.
        await using var network = await BenchNetwork.CreateAsync(4, log, cancellationToken);
        log.WriteLine($"namespaces {string.Join(", ", network.NodeNamespaces)} on 10.217.0.0/16");

        // The baseline first: one node alone, cluster mode, the same settings, its own database.
        var solo = new Samples("ms", Direction.LowerIsBetter);
        var soloEcho = new Samples("ms", Direction.LowerIsBetter);
        var soloRate = new Samples("ms", Direction.LowerIsBetter);
        double soloPerSecond;
        await postgres.CreateDatabaseAsync(SoloDatabase, cancellationToken);
        await using (var single = new BenchNode(options, "solo", 3, network.NodeNamespaces[3], postgres.StoreUri(SoloDatabase), apiKey, log))
        {
            await StartNodesAsync([single], cancellationToken);
            using var client = new DaemonClient(single.Url, apiKey);
            log.WriteLine($"single node: {options.Runs} create-to-first-output runs (+1 warmup)");
            for (var i = 0; i <= options.Runs; i++)
            {
                var (ms, _) = await CycleAsync(client, postgres, SoloDatabase, cancellationToken);
                if (i > 0)
                {
                    solo.Add(ms);
                }
            }
            await EchoRoundTripsAsync(client, client, soloEcho, null, cancellationToken);
            soloPerSecond = await CreationRateAsync([single], apiKey, soloRate, cancellationToken);
        }

        await postgres.CreateDatabaseAsync(ClusterDatabase, cancellationToken);
        var nodes = new List<BenchNode>();
        try
        {
            string[] names = ["a", "b", "c"];
            for (var i = 0; i < names.Length; i++)
            {
                nodes.Add(new BenchNode(options, names[i], i, network.NodeNamespaces[i], postgres.StoreUri(ClusterDatabase), apiKey, log));
            }
            await StartNodesAsync(nodes, cancellationToken);
            var clients = nodes.ToDictionary(n => n.NodeId, n => new DaemonClient(n.Url, apiKey));
            try
            {
                await CreateToOutputAsync(nodes, clients, postgres, solo, report, cancellationToken);
                await EchoByOwnerAsync(nodes, clients, postgres, soloEcho, report, cancellationToken);
                var rate = new Samples("ms", Direction.LowerIsBetter);
                var perSecond = await CreationRateAsync(nodes, apiKey, rate, cancellationToken);
                report.AddComparison($"create to first output, {options.Clients} clients, 3 nodes", "rate_create_to_first_output_ms", rate, "1 node", soloRate);
                report.AddFact($"creations per second, 3 nodes ({options.Clients} clients, {options.Creations} create + echo + kill)", "cluster_creations_per_s", "/s", perSecond);
                report.AddFact($"creations per second, 1 node (the same clients and count)", "single_creations_per_s", "/s", soloPerSecond);
                report.AddFact($"3 nodes / 1 node ({Environment.ProcessorCount} CPUs shared by all nodes: the overhead, not the scale-out)", "cluster_to_single_rate_ratio", "x", perSecond / soloPerSecond);
                if (options.Kills > 0)
                {
                    await LossAsync(nodes, clients, postgres, report, cancellationToken);
                }
            }
            finally
            {
                foreach (var client in clients.Values)
                {
                    client.Dispose();
                }
            }
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
        report.AddFact($"timed runs started before the host was quiet (waited up to {options.QuietWait.TotalSeconds:0} s each)", "unquiet_starts", "", _unquiet);
        report.AddFact($"the nodes' probe timeout (--max-sandboxes {options.MaxSandboxes} each, pool {options.PoolSize})", "probe_timeout_s", "s", options.ProbeTimeout.TotalSeconds);
        return report;
    }

    /// <summary>The first node alone (it runs the schema steps), then the others at once; then until each sees all active.</summary>
    private async Task StartNodesAsync(IReadOnlyList<BenchNode> nodes, CancellationToken cancellationToken)
    {
        log.WriteLine($"starting paddockd {string.Join(", ", nodes.Select(n => n.NodeId))}");
        _running.AddRange(nodes);
        await nodes[0].StartAsync(cancellationToken);
        await Task.WhenAll(nodes.Skip(1).Select(n => n.StartAsync(cancellationToken)));
        foreach (var node in nodes)
        {
            await UntilActiveAsync(node, nodes.Count, cancellationToken);
        }
        log.WriteLine($"  pids {string.Join(", ", nodes.Select(n => $"{n.NodeId}={n.Pid}"))}, all active");
    }

    private async Task UntilActiveAsync(BenchNode node, int count, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if ((await node.NodesAsync(http, cancellationToken)).Count(n => n.Status == "active") == count)
                {
                    return;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
            {
                // Its silo may still be joining.
            }
            if (waited.Elapsed > TimeSpan.FromSeconds(120))
            {
                throw new TimeoutException($"node {node.NodeId} did not see {count} active nodes within 120 s:\n{node.RecentOutput()}");
            }
            await Task.Delay(250, cancellationToken);
        }
    }

    /// <summary>
    /// One create → <c>echo hi</c> → "hi" through <paramref name="client"/>'s node, timed, after an untimed wait for a
    /// quiet host; then (untimed) the owner read from the store's record and a kill through the same node.
    /// </summary>
    private async Task<(double Milliseconds, string Owner)> CycleAsync(DaemonClient client, BenchPostgres postgres, string database, CancellationToken cancellationToken)
    {
        _unquiet += await HostCpu.WaitUntilQuietAsync(options.QuietWait, cancellationToken) ? 0 : 1;
        var clock = Stopwatch.StartNew();
        var sandbox = await client.CreateAsync(cancellationToken);
        await client.EchoHiAsync(sandbox, cancellationToken);
        var ms = clock.Elapsed.TotalMilliseconds;
        var owner = await OwnerAsync(postgres, database, sandbox.Id, cancellationToken);
        await client.KillAsync(sandbox.Id, cancellationToken);
        return (ms, owner);
    }

    [GeneratedRegex("^[a-z0-9-]{1,64}$")]
    private static partial Regex SandboxIdPattern();

    /// <summary>The node on the sandbox's record (<c>sandboxes.node_id</c>): where placement put it.</summary>
    private static async Task<string> OwnerAsync(BenchPostgres postgres, string database, string sandboxId, CancellationToken cancellationToken) =>
        SandboxIdPattern().IsMatch(sandboxId)
            ? await postgres.ScalarAsync(database, $"SELECT node_id FROM sandboxes WHERE sandbox_id = '{sandboxId}'", cancellationToken)
            : throw new InvalidDataException($"unexpected sandbox id '{sandboxId}'");

    /// <summary>
    /// Create-to-first-output through the owner against through another node. Placement sends a create to the node
    /// with more free slots of two drawn at random, the node asked on a tie; so with every node empty a create lands
    /// on the node asked. One idle "filler" sandbox on the first node makes it the fullest: a create sent there always
    /// lands on another node (the runs through another node), one sent to a second node lands there two times in
    /// three (the runs through the owner). Each run is counted by where its record says it landed, not by the plan.
    /// </summary>
    private async Task CreateToOutputAsync(IReadOnlyList<BenchNode> nodes, Dictionary<string, DaemonClient> clients, BenchPostgres postgres,
        Samples solo, DaemonReport report, CancellationToken cancellationToken)
    {
        var owner = new Samples("ms", Direction.LowerIsBetter);
        var remote = new Samples("ms", Direction.LowerIsBetter);
        // Warmup: one cycle through each node (each node's first create and first forward), not counted.
        foreach (var node in nodes)
        {
            await CycleAsync(clients[node.NodeId], postgres, ClusterDatabase, cancellationToken);
        }
        var filler = await clients[nodes[0].NodeId].CreateAsync(cancellationToken);
        var fillerNode = await OwnerAsync(postgres, ClusterDatabase, filler.Id, cancellationToken);
        var other = nodes.First(n => n.NodeId != fillerNode).NodeId;
        log.WriteLine($"create-to-first-output: filler on {fillerNode}; runs through {fillerNode} (lands elsewhere) alternate with runs through {other}; {options.Runs} of each kind");
        var section = Stopwatch.StartNew();
        var placed = new Dictionary<string, int>();
        try
        {
            for (var i = 0; (owner.Count < options.Runs || remote.Count < options.Runs) && i < 6 * options.Runs && section.Elapsed < options.SectionLimit; i++)
            {
                var asked = remote.Count < options.Runs && (i % 2 == 0 || owner.Count >= options.Runs) ? fillerNode : other;
                var (ms, landed) = await CycleAsync(clients[asked], postgres, ClusterDatabase, cancellationToken);
                placed[$"{asked}->{landed}"] = placed.GetValueOrDefault($"{asked}->{landed}") + 1;
                if (landed == asked && owner.Count < options.Runs)
                {
                    owner.Add(ms);
                }
                else if (landed != asked && remote.Count < options.Runs)
                {
                    remote.Add(ms);
                }
            }
        }
        finally
        {
            await clients[fillerNode].KillAsync(filler.Id, CancellationToken.None);
        }
        log.WriteLine($"  placements (asked->landed): {string.Join(", ", placed.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {p.Value}"))}");
        report.AddComparison("create to first output through another node", "remote_create_to_first_output_ms", remote, "through the owner", owner);
        report.AddComparison("create to first output through the owner (3 nodes)", "owner_create_to_first_output_ms", owner, "single node", solo);
        if (remote.Count > 0 && owner.Count > 0)
        {
            report.AddFact("create to first output, another node minus the owner (p50)", "remote_create_added_ms", "ms", remote.P50 - owner.P50);
        }
    }

    /// <summary>
    /// <c>echo hi</c> to its end on one sandbox, alternating through its owner and through another node, so each
    /// pair sees the same host load; the difference of the p50s is what one hop through the proxy adds.
    /// </summary>
    private async Task EchoByOwnerAsync(IReadOnlyList<BenchNode> nodes, Dictionary<string, DaemonClient> clients, BenchPostgres postgres,
        Samples solo, DaemonReport report, CancellationToken cancellationToken)
    {
        var sandbox = await clients[nodes[0].NodeId].CreateAsync(cancellationToken);
        try
        {
            var ownerId = await OwnerAsync(postgres, ClusterDatabase, sandbox.Id, cancellationToken);
            var otherId = nodes.First(n => n.NodeId != ownerId).NodeId;
            var owner = new Samples("ms", Direction.LowerIsBetter);
            var remote = new Samples("ms", Direction.LowerIsBetter);
            log.WriteLine($"echo round trips: sandbox on {ownerId}, through {ownerId} and through {otherId}, {options.RoundTrips} each (+1 warmup)");
            await EchoRoundTripsAsync(clients[ownerId], clients[otherId], owner, remote, cancellationToken, sandbox);
            report.AddComparison("echo round trip through another node", "remote_echo_ms", remote, "through its owner", owner);
            report.AddComparison("echo round trip through the owner (3 nodes)", "owner_echo_ms", owner, "single node", solo);
            report.AddFact("the proxy's added latency per hop (echo p50, another node minus the owner)", "proxy_hop_added_ms", "ms", remote.P50 - owner.P50);
        }
        finally
        {
            await clients[nodes[0].NodeId].KillAsync(sandbox.Id, CancellationToken.None);
        }
    }

    /// <summary>Round trips of <c>echo hi</c> (to its end event) through <paramref name="first"/>, alternating with <paramref name="second"/> when given.</summary>
    private async Task EchoRoundTripsAsync(DaemonClient first, DaemonClient second, Samples firstSamples, Samples? secondSamples,
        CancellationToken cancellationToken, CreatedSandbox? existing = null)
    {
        var sandbox = existing ?? await first.CreateAsync(cancellationToken);
        try
        {
            var section = Stopwatch.StartNew();
            for (var i = 0; i <= options.RoundTrips && section.Elapsed < options.SectionLimit; i++)
            {
                var a = await EchoOnceAsync(first, sandbox, cancellationToken);
                var b = secondSamples is null ? 0 : await EchoOnceAsync(second, sandbox, cancellationToken);
                if (i > 0)
                {
                    firstSamples.Add(a);
                    secondSamples?.Add(b);
                }
            }
        }
        finally
        {
            if (existing is null)
            {
                await first.KillAsync(sandbox.Id, CancellationToken.None);
            }
        }
    }

    private static async Task<double> EchoOnceAsync(DaemonClient client, CreatedSandbox sandbox, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var output = await client.RunForOutputAsync(sandbox, "/bin/echo", ["hi"], cancellationToken);
        var ms = clock.Elapsed.TotalMilliseconds;
        return output.Trim() == "hi" ? ms : throw new InvalidDataException($"echo hi printed '{output}'");
    }

    /// <summary>
    /// <see cref="ClusterBenchOptions.Clients"/> clients run <see cref="ClusterBenchOptions.Creations"/> create + echo +
    /// kill cycles in all; client k enters through node k mod the node count (placement does the rest). Creations per second.
    /// </summary>
    private async Task<double> CreationRateAsync(IReadOnlyList<BenchNode> nodes, string apiKey, Samples latencies, CancellationToken cancellationToken)
    {
        log.WriteLine($"creation rate on {nodes.Count} node(s): {options.Creations} cycles by {options.Clients} clients");
        _unquiet += await HostCpu.WaitUntilQuietAsync(options.QuietWait, cancellationToken) ? 0 : 1;
        var bag = new ConcurrentBag<double>();
        var started = 0;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        limit.CancelAfter(options.SectionLimit);
        var section = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, options.Clients).Select(async k =>
        {
            // One HTTP client per simulated SDK user, each with its own connections.
            using var client = new DaemonClient(nodes[k % nodes.Count].Url, apiKey);
            while (Interlocked.Increment(ref started) <= options.Creations)
            {
                var clock = Stopwatch.StartNew();
                var sandbox = await client.CreateAsync(limit.Token);
                await client.EchoHiAsync(sandbox, limit.Token);
                bag.Add(clock.Elapsed.TotalMilliseconds);
                await client.KillAsync(sandbox.Id, limit.Token);
            }
        }));
        var seconds = section.Elapsed.TotalSeconds;
        foreach (var ms in bag)
        {
            latencies.Add(ms);
        }
        return bag.Count / seconds;
    }

    /// <summary>
    /// The last node SIGKILLed with a sandbox of its own, <see cref="ClusterBenchOptions.Kills"/> times: the time until
    /// the first node's API answers 404 for that sandbox (its record marked lost), against the time until the first
    /// node's membership shows the killed node dead (Orleans' part, before Paddock marks the records). Polled every
    /// 50 ms, each trial bounded by twice the daemon's own bound on a declaration. After each trial the node is
    /// started again (same id and state: it destroys its stray sandbox) and the next trial waits for three active.
    /// </summary>
    private async Task LossAsync(IReadOnlyList<BenchNode> nodes, Dictionary<string, DaemonClient> clients, BenchPostgres postgres,
        DaemonReport report, CancellationToken cancellationToken)
    {
        var victim = nodes[^1];
        var observer = nodes[0];
        var lost = new Samples("s", Direction.LowerIsBetter);
        var dead = new Samples("s", Direction.LowerIsBetter);
        // As ClusterSettings.DeathDeclarationBound (3 missed probes, then the votes), doubled for a loaded host.
        var bound = (options.ProbeTimeout * 4 * 2 + TimeSpan.FromSeconds(10)) * 2;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        http.DefaultRequestHeaders.Add("X-API-Key", victim.ApiKey);
        log.WriteLine($"loss: {options.Kills} SIGKILLs of {victim.NodeId}, each with one sandbox on it, watched through {observer.NodeId} (bound {bound.TotalSeconds:0} s)");
        for (var trial = 0; trial < options.Kills; trial++)
        {
            // A create through the victim lands there while every node is empty (a tie goes to the node asked).
            CreatedSandbox? onVictim = null;
            for (var attempt = 0; attempt < 5 && onVictim is null; attempt++)
            {
                var sandbox = await clients[victim.NodeId].CreateAsync(cancellationToken);
                if (await OwnerAsync(postgres, ClusterDatabase, sandbox.Id, cancellationToken) == victim.NodeId)
                {
                    onVictim = sandbox;
                }
                else
                {
                    await clients[victim.NodeId].KillAsync(sandbox.Id, cancellationToken);
                }
            }
            if (onVictim is not { } target)
            {
                throw new InvalidOperationException($"five creates through {victim.NodeId} all landed elsewhere");
            }
            // The victim's silo now: after a restart its earlier silos are still listed, as dead.
            var silo = (await observer.NodesAsync(http, cancellationToken)).Single(n => n.NodeId == victim.NodeId && n.Status == "active").Silo;
            var clock = Stopwatch.StartNew();
            await victim.KillAsync();
            // Two pollers at once, so that a slow membership read (its grain call to a suspected node may wait
            // seconds) does not delay seeing the 404, nor the other way round.
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            stop.CancelAfter(bound);
            var declaredTask = PollAsync(async token =>
                (await observer.NodesAsync(http, token)).Any(n => n.Silo == silo && n.Status == "dead"), clock, stop.Token);
            var gone = await PollAsync(async token =>
            {
                using var response = await http.GetAsync(new Uri(observer.Url, $"/sandboxes/{target.Id}"), token);
                if (response.StatusCode != HttpStatusCode.NotFound)
                {
                    return false;
                }
                var body = await response.Content.ReadAsStringAsync(token);
                return body.Contains("lost", StringComparison.Ordinal)
                    ? true
                    : throw new InvalidDataException($"{observer.NodeId} answered 404 for the killed node's sandbox without saying it was lost: {body}");
            }, clock, stop.Token);
            // The membership normally shows it dead before the records are marked; a few seconds more at most.
            stop.CancelAfter(TimeSpan.FromSeconds(5));
            var declared = await declaredTask;
            cancellationToken.ThrowIfCancellationRequested();
            if (gone is not { } lostAfter)
            {
                throw new TimeoutException($"{observer.NodeId} did not report {victim.NodeId}'s sandbox lost within {bound.TotalSeconds:0} s of the SIGKILL");
            }
            lost.Add(lostAfter.TotalSeconds);
            if (declared is { } deadAfter)
            {
                dead.Add(deadAfter.TotalSeconds);
            }
            log.WriteLine($"  trial {trial + 1}: declared dead after {(declared is { } d ? $"{d.TotalSeconds:0.00} s" : "(not seen)")}, " +
                $"sandbox lost through {observer.NodeId} after {lostAfter.TotalSeconds:0.00} s; restarting {victim.NodeId}");
            await victim.StartAsync(cancellationToken);
            foreach (var node in nodes)
            {
                await UntilActiveAsync(node, nodes.Count, cancellationToken);
            }
        }
        report.AddComparison($"SIGKILL to its sandbox reported lost through another node (probe timeout {options.ProbeTimeout.TotalSeconds:0} s)", "sigkill_to_lost_s", lost,
            "to declared dead", dead);
    }

    /// <summary>
    /// Asks <paramref name="condition"/> every 50 ms until it holds (the time on <paramref name="clock"/> then) or
    /// <paramref name="cancellationToken"/> ends the wait (null). A request that fails or times out counts as not yet.
    /// </summary>
    private static async Task<TimeSpan?> PollAsync(Func<CancellationToken, Task<bool>> condition, Stopwatch clock, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                if (await condition(cancellationToken))
                {
                    return clock.Elapsed;
                }
                await Task.Delay(50, cancellationToken);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or OperationCanceledException)
            {
                // Not yet (a forward to the dead node fails until it is declared dead), or the bound passed.
            }
        }
        return null;
    }
}
