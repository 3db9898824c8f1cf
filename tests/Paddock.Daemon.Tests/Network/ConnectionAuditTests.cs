using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// Outbound connections in the audit trail (Networking/ConnectionObserver): the real daemon over a real runc tier with
/// egress, its own nftables table, NFLOG group, interface prefix and pool (a /24 of 10.220.0.0/16), and an
/// <see cref="OutsideHost"/> of its own. The connections are made by processes started straight through the agent,
/// not through the daemon's API, so nothing the sandbox's processes do on their side takes part in what is recorded.
/// </summary>
public sealed class ConnectionAuditTests : IAsyncLifetime
{
    private static readonly int Pid = Environment.ProcessId;
    // Not the octet NetworkFixture's outside host takes in this process (Pid % 250 + 1).
    private static readonly int Octet = (Pid + 125) % 250 + 1;

    // Connects, sends N bytes (argv[3]), reads until the peer closes or N bytes came back; "OK <received>" or "ERR <error>".
    private const string Probe = """
        import socket, sys
        host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        try:
            s = socket.create_connection((host, port), timeout=3)
            s.settimeout(5)
            s.sendall(b"x" * n if n else b"GET / HTTP/1.0\r\n\r\n")
            got = 0
            while n == 0 or got < n:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            s.close()
            print("OK %d" % got)
        except Exception as e:
            print("ERR " + type(e).__name__)
        """;

    // Sends argv[3] UDP datagrams to argv[1], ports argv[2].. upwards, as fast as it can; prints the seconds it took.
    private const string Flood = """
        import socket, sys, time
        host, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = time.monotonic()
        for i in range(n):
            try:
                s.sendto(b"x", (host, first + i % 1000))
            except OSError:
                pass
        print("%.3f" % (time.monotonic() - t))
        """;

    private readonly TempDir _state = new();
    private readonly ForwardingSink _sink = new();
    private RuncOptions _options = null!;
    private OutsideHost _outside = null!;
    private RuncRuntime _runtime = null!;
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync()
    {
        TestEnvironment.RequireRootAndRunc();
        var agent = await TestEnvironment.AgentBinaryAsync();
        var template = await TestEnvironment.BaseTemplateAsync();
        _outside = await OutsideHost.CreateAsync(Octet, "c");
        _options = RuncFixture.OwnOptions(Path.Combine("conn-audit", Pid.ToString(CultureInfo.InvariantCulture)), $"paddock-conntest-{Pid}") with
        {
            Network = new NetworkOptions
            {
                Pool = $"10.220.{Octet.ToString(CultureInfo.InvariantCulture)}.0/24",
                TableName = $"paddock_test_ca_{Pid}",
                InterfacePrefix = $"pc{Pid % 1_000_000}s",
                DnsServers = [_outside.Resolver],
            },
        };
        _runtime = new RuncRuntime(_options, agent, NullLogger<RuncRuntime>.Instance, _sink);
        await _runtime.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromMinutes(1)));
        _daemon = await TestDaemon.StartAsync(_runtime, _state.Path, templates: new BaseOnly(template));
        // The runtime is made before the daemon (the test owns it); the daemon's sink is the audit trail.
        _sink.Target = _daemon.Services.GetRequiredService<IConnectionSink>();
    }

    public async Task DisposeAsync()
    {
        _sink.Target = null;
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync();
        }
        if (_runtime is not null)
        {
            // Every sandbox, the table, the state directory, the cgroups; disposing the runtime closes the observer's socket.
            await NetworkFixture.DestroyAsync(_runtime, _options);
        }
        if (_outside is not null)
        {
            await _outside.DisposeAsync();
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    [Fact]
    public async Task Allowed_and_denied_connections_appear_with_verdict_destination_port_and_bytes_and_outlive_the_kill()
    {
        var created = await CreateAsync(_daemon, $$$"""{"templateID":"base","secure":false,"network":{"allowOut":["{{{_outside.Address}}}"],"denyOut":["0.0.0.0/0"]}}""");
        var id = Get<string>(created, "sandboxID");

        // 5000 bytes each way through the outside host's echo server; then a denied address, whose SYN retries are one event.
        Assert.Equal("OK 5000", await InsideAsync(id, Probe, _outside.Address, "9000", "5000"));
        Assert.StartsWith("ERR ", await InsideAsync(id, Probe, _outside.Other, "8080", "0"), StringComparison.Ordinal);

        var attempts = await WaitForAsync(id, events =>
            events.Any(e => Is(e, "net.connect", "allowed", _outside.Address, 9000)) && events.Any(e => Is(e, "net.connect", "denied", _outside.Other, 8080)));
        Assert.Equal("tcp", (string)attempts.First(e => Is(e, "net.connect", "allowed", _outside.Address, 9000))["protocol"]!);
        Assert.Single(attempts, e => Is(e, "net.connect", "denied", _outside.Other, 8080));
        // The sandbox's DNS goes to the daemon's forwarder: a lookup, not recorded as a connection out.
        Assert.DoesNotContain(attempts, e => (string?)e["address"] == _runtime.Network!.ResolverAddress.ToString());

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        await _daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

        // The flow was still in conntrack (TIME_WAIT); the kill ended it, and its end came with its counters.
        var after = await WaitForAsync(id, events => events.Any(e => Is(e, "net.close", "allowed", _outside.Address, 9000)));
        var closed = after.First(e => Is(e, "net.close", "allowed", _outside.Address, 9000));
        // IP packets as conntrack counts them: the 5000 payload bytes plus headers, each way.
        Assert.InRange((long)closed["bytesOut"]!, 5000, 20_000);
        Assert.InRange((long)closed["bytesIn"]!, 5000, 20_000);
        Assert.Equal((long)closed["bytesOut"]! + (long)closed["bytesIn"]!, (long)closed["bytes"]!);
        Assert.True((long)closed["durationMs"]! >= 0);
        Assert.Contains(after, e => Is(e, "net.connect", "denied", _outside.Other, 8080));
    }

    [Fact]
    public async Task Attempts_at_the_host_are_denied_and_a_flood_is_held_to_the_log_rate()
    {
        var created = await CreateAsync(_daemon, $$$"""{"templateID":"base","secure":false,"network":{"denyOut":["0.0.0.0/0"]}}""");
        var id = Get<string>(created, "sandboxID");
        var gateway = _runtime.Network!.Find(id)!.HostAddress.ToString();

        // The host end of the sandbox's own link: the input guard drops it, and logs it first.
        Assert.StartsWith("ERR ", await InsideAsync(id, Probe, gateway, "22", "0"), StringComparison.Ordinal);
        var host = await WaitForAsync(id, events => events.Any(e => Is(e, "net.connect", "denied", gateway, 22)));
        Assert.Equal("to the host", (string)host.First(e => Is(e, "net.connect", "denied", gateway, 22))["note"]!);

        // 2000 datagrams to 1000 ports of a denied address: each a flow of its own, logged at most LogRate a second
        // after a burst of LogBurst, whatever the sandbox sends.
        const int sent = 2000;
        var seconds = double.Parse(await InsideAsync(id, Flood, _outside.Other, "20000", sent.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        // A marker after the flood: once it is in the trail, so is everything logged before it (one reader, in order).
        Assert.StartsWith("ERR ", await InsideAsync(id, Probe, _outside.Other, "8443", "0"), StringComparison.Ordinal);
        var events = await WaitForAsync(id, events => events.Any(e => Is(e, "net.connect", "denied", _outside.Other, 8443)));
        var flood = events.Count(e => (string?)e["kind"] == "net.connect" && (string?)e["protocol"] == "udp" && (string?)e["address"] == _outside.Other);
        Assert.True(flood > 0, "no datagram of the flood was recorded");
        // The bound, from the rule's limit: the burst plus the rate for every started second the flood took (and one more for the marker's wait).
        var bound = NftRules.LogBurst + NftRules.LogRate * ((int)Math.Ceiling(seconds) + 10);
        Assert.True(flood <= Math.Min(bound, sent), $"{flood} flood events recorded for {sent} datagrams in {seconds} s; the log limit allows {bound}");
    }

    private static bool Is(JsonNode e, string kind, string verdict, string address, int port) =>
        (string?)e["kind"] == kind && (string?)e["verdict"] == verdict && (string?)e["address"] == address && (int?)e["port"] == port;

    private async Task<string> InsideAsync(string id, string script, params string[] args)
    {
        var output = await AgentCalls.RunAsync(_runtime, id, "/usr/bin/python3", ["-c", script, .. args], "user", TimeSpan.FromSeconds(60));
        Assert.True(output.ExitCode == 0, output.ToString());
        return output.Stdout.Trim();
    }

    /// <summary>Reads the sandbox's trail through the API until <paramref name="done"/> holds (at most 60 s).</summary>
    private async Task<IReadOnlyList<JsonNode>> WaitForAsync(string id, Func<IReadOnlyList<JsonNode>, bool> done)
    {
        var clock = Stopwatch.StartNew();
        IReadOnlyList<JsonNode> events = [];
        while (clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            var (status, body, _) = await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/audit?limit=1000");
            Assert.True(status == HttpStatusCode.OK, $"audit answered {(int)status}: {body?.ToJsonString()}");
            events = body!["events"]!.AsArray().Select(e => e!).ToList();
            if (done(events))
            {
                return events;
            }
            await Task.Delay(200);
        }
        Assert.Fail("the trail never held what was expected; it has: " + string.Join("\n", events.Select(e => e.ToJsonString())));
        return events;
    }

    /// <summary>The runtime is made before the daemon whose audit trail it reports to.</summary>
    private sealed class ForwardingSink : IConnectionSink
    {
        public IConnectionSink? Target { get; set; }

        public void Observed(ConnectionEvent connection) => Target?.Observed(connection);
    }
}
