using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Network;

[CollectionDefinition(Name)]
public sealed class NetworkCollection : ICollectionFixture<NetworkFixture>
{
    public const string Name = "network";
}

/// <summary>
/// A real <see cref="RuncRuntime"/> with sandbox egress on, over its own state directory, cgroup parent, nftables
/// table (paddock_test_PID), interface prefix (pt PID) and address pool (a /24 of 10.203.0.0/16), so that it shares
/// nothing with a daemon or another test process on the machine; and an <see cref="OutsideHost"/>, whose test
/// resolver is the runtime's only DNS server (so the DNS forwarder and the proxy never ask a real one).
/// </summary>
public sealed class NetworkFixture : IAsyncLifetime
{
    private static readonly int Pid = Environment.ProcessId;
    private static readonly int Octet = Pid % 250 + 1;

    internal RuncOptions Options { get; private set; } = new()
    {
        StateDirectory = Path.Combine(TestEnvironment.StateRoot, "net-runs", Pid.ToString(CultureInfo.InvariantCulture)),
        CgroupParent = $"paddock-nettest-{Pid}",
        StartTimeout = TimeSpan.FromSeconds(30),
        Network = new NetworkOptions
        {
            Pool = $"10.203.{Octet}.0/24",
            TableName = $"paddock_test_{Pid}",
            InterfacePrefix = $"pt{Pid % 1_000_000}s",
        },
    };

    internal RuncRuntime Runtime { get; private set; } = null!;

    internal TemplateInfo Base { get; private set; } = null!;

    internal OutsideHost Outside { get; private set; } = null!;

    internal string AgentBinary { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        TestEnvironment.RequireRootAndRunc();
        if (!File.Exists("/usr/sbin/nft"))
        {
            throw new InvalidOperationException("nftables is not installed: run scripts/setup (apt-get install nftables)");
        }
        AgentBinary = await TestEnvironment.AgentBinaryAsync();
        Base = await TestEnvironment.BaseTemplateAsync();
        Outside = await OutsideHost.CreateAsync(Octet);
        Options = Options with { Network = Options.Network! with { DnsServers = [Outside.Resolver] } };
        Runtime = NewRuntime();
        // What an aborted run with this pid left (the table is rebuilt by the runtime itself).
        await Runtime.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromMinutes(1)));
    }

    internal RuncRuntime NewRuntime() => new(Options, AgentBinary, NullLogger<RuncRuntime>.Instance);

    internal SandboxSpec Spec(EgressPolicy? policy) => new()
    {
        SandboxId = "n-" + Guid.NewGuid().ToString("N")[..12],
        TemplateLayers = [Base.RootfsPath],
        DefaultUser = Base.DefaultUser,
        Limits = new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: 256, DiskBytes: 1L << 30),
        Egress = policy,
    };

    internal async Task<NetSandbox> StartAsync(EgressPolicy? policy)
    {
        var sandbox = await Runtime.StartAsync(Spec(policy), TestEnvironment.Timeout(TimeSpan.FromSeconds(90)));
        return new NetSandbox(this, sandbox.SandboxId);
    }

    public async Task DisposeAsync()
    {
        if (Outside is not null)
        {
            await Outside.DisposeAsync();
        }
        if (Runtime is not null)
        {
            await DestroyAsync(Runtime, Options);
        }
    }

    /// <summary>
    /// Destroys every sandbox of a runtime with egress, then its leftovers, its nftables table, its state directory
    /// and its (empty) cgroup parents, and disposes it.
    /// </summary>
    internal static async Task DestroyAsync(RuncRuntime runtime, RuncOptions options)
    {
        await RuncFixture.DestroyAllAsync(runtime);
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        await runtime.Network!.RemoveTableAsync(timeout.Token);
        runtime.Dispose();
        if (MountTable.Under(options.StateDirectory).Count == 0 && Directory.Exists(options.StateDirectory))
        {
            Directory.Delete(options.StateDirectory, recursive: true);
        }
        foreach (var m in MountTable.Read().Where(m => m.FsType is "cgroup" or "cgroup2"))
        {
            var parent = Path.Combine(m.MountPoint, options.CgroupParent);
            if (Directory.Exists(parent) && !Directory.EnumerateDirectories(parent).Any())
            {
                Directory.Delete(parent);
            }
        }
    }
}

/// <summary>A sandbox of the fixture, destroyed on dispose, with a TCP probe that runs inside it.</summary>
internal sealed class NetSandbox(NetworkFixture fixture, string id) : IAsyncDisposable
{
    // Connects, sends the payload (hex), prints "OK " and what came back, or "ERR " and the error's name.
    private const string Probe = """
        import socket, sys
        host, port, payload = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
        try:
            s = socket.create_connection((host, port), timeout=3)
            s.settimeout(5)
            s.sendall(payload)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            print("OK " + data.decode("latin-1"))
        except Exception as e:
            print("ERR " + type(e).__name__)
        """;

    public string Id { get; } = id;

    public SandboxLink Link => fixture.Runtime.Network!.Find(Id) ?? throw new InvalidOperationException($"sandbox {Id} has no link");

    /// <summary>"OK ..." with the reply, or "ERR ..." when the connection failed, timed out or was reset.</summary>
    public async Task<string> ConnectAsync(string host, int port, byte[]? payload = null)
    {
        payload ??= "GET / HTTP/1.0\r\n\r\n"u8.ToArray();
        var output = await AgentCalls.RunAsync(fixture.Runtime, Id, "/usr/bin/python3", ["-c", Probe, host, port.ToString(CultureInfo.InvariantCulture), Convert.ToHexString(payload)], "user", TimeSpan.FromSeconds(60));
        Assert.True(output.ExitCode == 0, output.ToString());
        return output.Stdout.Trim();
    }

    public Task<CommandOutput> RunAsync(string command) =>
        AgentCalls.RunAsync(fixture.Runtime, Id, "/bin/sh", ["-c", command], "user", TimeSpan.FromSeconds(60));

    // Resolves a name as programs in the sandbox do (getaddrinfo through /etc/resolv.conf): "OK a,b" or "ERR ...".
    private const string Resolve = """
        import socket, sys
        try:
            print("OK " + ",".join(sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET, socket.SOCK_STREAM)})))
        except Exception as e:
            print("ERR " + type(e).__name__ + " " + str(getattr(e, "errno", "")))
        """;

    // One raw A question to the resolver of /etc/resolv.conf (or argv[3]), over UDP or TCP:
    // "RCODE n ANSWERS a,b" or "ERR ..." when nothing came back.
    private const string Query = """
        import socket, sys, random
        name, proto = sys.argv[1], sys.argv[2]
        server = sys.argv[3] if len(sys.argv) > 3 else [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]
        qid = random.randrange(65536)
        q = qid.to_bytes(2, "big") + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        q += b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\x00\x00\x01\x00\x01"
        try:
            if proto == "tcp":
                s = socket.create_connection((server, 53), timeout=3); s.sendall(len(q).to_bytes(2, "big") + q)
                n = int.from_bytes(s.recv(2), "big"); r = b""
                while len(r) < n:
                    chunk = s.recv(n - len(r))
                    if not chunk: break
                    r += chunk
            else:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3); s.sendto(q, (server, 53)); r = s.recv(4096)
            assert int.from_bytes(r[:2], "big") == qid, "wrong id"
            i = 12
            while r[i] != 0: i += 1 + r[i]
            i += 5
            answers = []
            for _ in range(int.from_bytes(r[6:8], "big")):
                i += 2 if r[i] >= 192 else r.index(0, i) + 1 - i
                rtype, rdlen = int.from_bytes(r[i:i+2], "big"), int.from_bytes(r[i+8:i+10], "big")
                if rtype == 1: answers.append(socket.inet_ntoa(r[i+10:i+14]))
                i += 10 + rdlen
            print("RCODE %d ANSWERS %s" % (r[3] & 15, ",".join(answers)))
        except Exception as e:
            print("ERR " + type(e).__name__)
        """;

    /// <summary>getaddrinfo in the sandbox: "OK a,b" (sorted) or "ERR gaierror ...".</summary>
    public async Task<string> ResolveAsync(string name)
    {
        var output = await AgentCalls.RunAsync(fixture.Runtime, Id, "/usr/bin/python3", ["-c", Resolve, name], "user", TimeSpan.FromSeconds(60));
        Assert.True(output.ExitCode == 0, output.ToString());
        return output.Stdout.Trim();
    }

    /// <summary>A raw A question from the sandbox to its resolver (or <paramref name="server"/>): "RCODE n ANSWERS a,b" or "ERR ...".</summary>
    public async Task<string> QueryAsync(string name, bool overTcp = false, string? server = null)
    {
        string[] args = server is null ? ["-c", Query, name, overTcp ? "tcp" : "udp"] : ["-c", Query, name, overTcp ? "tcp" : "udp", server];
        var output = await AgentCalls.RunAsync(fixture.Runtime, Id, "/usr/bin/python3", args, "user", TimeSpan.FromSeconds(60));
        Assert.True(output.ExitCode == 0, output.ToString());
        return output.Stdout.Trim();
    }

    public Task<string> HttpAsync(string host, int port, string hostHeader) =>
        ConnectAsync(host, port, System.Text.Encoding.ASCII.GetBytes($"GET / HTTP/1.1\r\nHost: {hostHeader}\r\nConnection: close\r\n\r\n"));

    public async ValueTask DisposeAsync() =>
        await fixture.Runtime.DestroyAsync(Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
}
