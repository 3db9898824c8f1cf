using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Daemon;

/// <summary>
/// <c>paddock-bench egress</c> (issue 21): what the egress proxy's hop costs an allowed HTTPS download. An "outside"
/// network namespace that the bench makes holds an HTTPS server and a DNS server for "allowed.test" (nothing is
/// sent to any other address); paddockd uses that DNS server as its resolver. Two sandboxes download the same
/// file from https://allowed.test: one under an open policy (straight out through NAT: the baseline) and one allowed
/// only "allowed.test" (nftables redirects it to the proxy, which reads the SNI, resolves the name and relays).
/// Each run is timed inside the sandbox (Python, a fresh TLS connection per request): the first byte of a 1-byte
/// file (connection setup through the hop) and a download of N MiB; the two sandboxes alternate run by run.
/// </summary>
internal static class EgressCommand
{
    public const string Usage = """
        usage: paddock-bench egress [options]
          --binary PATH       paddockd to measure (default: artifacts/paddockd/paddockd under the repository)
          --templates-dir DIR built templates (default /var/lib/paddock-test/templates)
          --runs N            timed runs per side, after one warmup (default 10)
          --mib N             MiB per download (default 64)
          --connections N     TCP connections per run of the connection rate section (default 500; 0: skip it)
          --observe on|off    paddockd's audit trail, with it the connection observer, and /metrics (default on)
          --json              also print the figures as one JSON line at the end
        Needs root, runc and nftables (the runc tier with egress).
        """;

    private const string Server = """
        import socket, ssl, sys, threading
        addr, cert, key = sys.argv[1:4]
        chunk = b"\0" * (1 << 20)
        def serve(c):
            try:
                head = b""
                while b"\r\n\r\n" not in head and len(head) < 16384:
                    data = c.recv(4096)
                    if not data:
                        return
                    head += data
                path = head.split(b" ")[1].decode()
                size = 1 if path == "/small" else int(path.strip("/")) << 20
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
                while size > 0:
                    n = min(size, len(chunk))
                    c.sendall(chunk[:n] if n < len(chunk) else chunk)
                    size -= n
            except OSError:
                pass
            finally:
                c.close()
        def closer():
            # Accepts and closes at once: the other end of the connection rate section.
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, 7)); s.listen(512)
            while True:
                c, _ = s.accept()
                c.close()
        def https():
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); context.load_cert_chain(cert, key)
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, 443)); s.listen(64)
            while True:
                c, _ = s.accept()
                try:
                    t = context.wrap_socket(c, server_side=True)
                except (OSError, ssl.SSLError):
                    c.close(); continue
                threading.Thread(target=serve, args=(t,), daemon=True).start()
        def dns():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, 53))
            while True:
                q, peer = s.recvfrom(4096)
                i, labels = 12, []
                while i < len(q) and q[i] != 0:
                    labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace").lower()); i += 1 + q[i]
                i += 1
                qtype = int.from_bytes(q[i:i + 2], "big")
                known = ".".join(labels) == "allowed.test"
                answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + socket.inet_aton(addr) if known and qtype == 1 else b""
                header = q[:2] + bytes([0x84 | (q[2] & 1), 0x80 | (0 if known else 3)]) + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
                s.sendto(header + q[12:i + 4] + answer, peer)
        threading.Thread(target=https, daemon=True).start()
        threading.Thread(target=dns, daemon=True).start()
        threading.Thread(target=closer, daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
        """;

    // In the sandbox: a fresh TLS connection per request to https://allowed.test (name through the sandbox's
    // resolver). Prints {"first": seconds to the first byte of /small, "seconds": the download, "bytes": its size}.
    private const string Client = """
        import json, socket, ssl, sys, time
        context = ssl.create_default_context(); context.check_hostname = False; context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_IGNORE_UNEXPECTED_EOF  # the server closes without close_notify
        def get(path):
            start = time.perf_counter()
            t = context.wrap_socket(socket.create_connection(("allowed.test", 443), timeout=60), server_hostname="allowed.test")
            t.sendall(b"GET %s HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n" % path.encode())
            first, total = None, 0
            while True:
                data = t.recv(1 << 20)
                if not data:
                    break
                if first is None:
                    first = time.perf_counter() - start
                total += len(data)
            t.close()
            return first, time.perf_counter() - start, total
        first, _, _ = get("/small")
        _, seconds, total = get("/" + sys.argv[1])
        print(json.dumps({"first": first, "seconds": seconds, "bytes": total}))
        """;

    // In the sandbox: argv[2] TCP connections one after another to argv[1] port 7 (accepted and closed at once);
    // prints the connections per second.
    private const string Connector = """
        import socket, sys, time
        host, n = sys.argv[1], int(sys.argv[2])
        start = time.perf_counter()
        for _ in range(n):
            s = socket.create_connection((host, 7), timeout=10)
            s.recv(1)
            s.close()
        print(n / (time.perf_counter() - start))
        """;

    public static async Task<int> RunAsync(ReadOnlyMemory<string> args)
    {
        var options = new DaemonBenchOptions { Binary = DaemonCommand.DefaultBinary(), PoolSize = 0 };
        var runs = 10;
        var mib = 64;
        var json = false;
        var connections = 500;
        try
        {
            var a = args.Span;
            for (var i = 0; i < a.Length; i++)
            {
                var option = a[i];
                string Value(ReadOnlySpan<string> list, ref int index) =>
                    index + 1 < list.Length ? list[++index] : throw new ArgumentException($"option {option} needs a value");
                switch (option)
                {
                    case "--binary": options = options with { Binary = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--templates-dir": options = options with { TemplatesDir = Path.GetFullPath(Value(a, ref i)) }; break;
                    case "--runs": runs = DaemonCommand.Positive(option, Value(a, ref i)); break;
                    case "--mib": mib = DaemonCommand.Positive(option, Value(a, ref i)); break;
                    case "--connections": connections = int.Parse(Value(a, ref i), CultureInfo.InvariantCulture) is var c and >= 0 ? c : throw new ArgumentException("--connections: expected 0 or more"); break;
                    case "--observe":
                        options = options with
                        {
                            Observe = Value(a, ref i) switch
                            {
                                "on" => true,
                                "off" => false,
                                var v => throw new ArgumentException($"--observe: expected on or off, got '{v}'"),
                            },
                        };
                        break;
                    case "--json": json = true; break;
                    case "-h" or "--help": Console.Error.WriteLine(Usage); return 0;
                    default: throw new ArgumentException($"unknown option '{option}'");
                }
            }
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"paddock-bench: {ex.Message}\n{Usage}");
            return 2;
        }
        if (!File.Exists(options.Binary))
        {
            Console.Error.WriteLine($"paddock-bench: no paddockd at {options.Binary}; run scripts/publish-daemon first");
            return 2;
        }

        using var cancel = new CancellationTokenSource();
        void Cancel(PosixSignalContext context)
        {
            context.Cancel = true;
            cancel.Cancel();
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Cancel);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Cancel);
        var log = Console.Error;
        log.WriteLine($"paddock-bench egress: {options.Binary}, {Environment.ProcessorCount} CPUs, {RuntimeInformation.OSDescription}");

        await using var outside = await Outside.StartAsync(log, cancel.Token);
        await using var daemon = await PaddockdProcess.StartAsync(options, TimeSpan.FromMinutes(10), log, cancel.Token,
            new Dictionary<string, string> { ["PADDOCK_Runc__Network__DnsServers"] = outside.Address });
        using var client = new DaemonClient(daemon.Url, daemon.ApiKey);
        var direct = await client.CreateAsync("""{"templateID":"base","timeout":900}""", cancel.Token);
        var proxied = await client.CreateAsync("""{"templateID":"base","timeout":900,"network":{"allowOut":["allowed.test"],"denyOut":["0.0.0.0/0"]}}""", cancel.Token);

        var firstDirect = new Samples("ms", Direction.LowerIsBetter);
        var firstProxied = new Samples("ms", Direction.LowerIsBetter);
        var speedDirect = new Samples("MiB/s", Direction.HigherIsBetter);
        var speedProxied = new Samples("MiB/s", Direction.HigherIsBetter);
        var daemonCpuPerMib = new Samples("ms", Direction.LowerIsBetter);
        var clock = Stopwatch.StartNew();
        for (var run = 0; run <= runs && clock.Elapsed < TimeSpan.FromMinutes(10); run++)
        {
            // Alternating, so that a change in the machine's load hits both sides; run 0 is the warmup.
            foreach (var (sandbox, first, speed) in new[] { (direct, firstDirect, speedDirect), (proxied, firstProxied, speedProxied) })
            {
                var cpuBefore = daemon.CpuMilliseconds().DaemonMs;
                var output = await client.RunForOutputAsync(sandbox, "/usr/bin/python3", ["-c", Client, mib.ToString(CultureInfo.InvariantCulture)], cancel.Token);
                var cpu = daemon.CpuMilliseconds().DaemonMs - cpuBefore;
                using var result = JsonDocument.Parse(output);
                var bytes = result.RootElement.GetProperty("bytes").GetInt64();
                if (bytes < (long)mib << 20)
                {
                    throw new InvalidOperationException($"a download through {(sandbox == direct ? "NAT" : "the proxy")} got {bytes} bytes: {output}");
                }
                if (run == 0)
                {
                    continue;
                }
                first.Add(result.RootElement.GetProperty("first").GetDouble() * 1000);
                speed.Add(mib / result.RootElement.GetProperty("seconds").GetDouble());
                if (sandbox == proxied)
                {
                    // paddockd's CPU over the whole run (its agent calls included, as on the direct side).
                    daemonCpuPerMib.Add(cpu / mib);
                }
            }
            log.WriteLine(run == 0 ? "  warmup done" : $"  run {run}: direct {speedDirect.P50:0} MiB/s, proxied {speedProxied.P50:0} MiB/s (p50 so far)");
        }

        // Connections per second from the open sandbox, and paddockd's CPU for them: what the connection observer
        // (a conntrack NEW and DESTROY event per connection, two audit events) costs. Compare --observe on and off.
        var rate = new Samples("conn/s", Direction.HigherIsBetter);
        var cpuPerThousand = new Samples("ms", Direction.LowerIsBetter);
        for (var run = 0; connections > 0 && run <= runs && clock.Elapsed < TimeSpan.FromMinutes(15); run++)
        {
            var cpuBefore = daemon.CpuMilliseconds().DaemonMs;
            var output = await client.RunForOutputAsync(direct, "/usr/bin/python3", ["-c", Connector, outside.Address, connections.ToString(CultureInfo.InvariantCulture)], cancel.Token);
            var cpu = daemon.CpuMilliseconds().DaemonMs - cpuBefore;
            if (run == 0)
            {
                continue;
            }
            rate.Add(double.Parse(output.Trim(), CultureInfo.InvariantCulture));
            cpuPerThousand.Add(cpu * 1000.0 / connections);
        }
        if (connections > 0)
        {
            log.WriteLine($"  connections: {rate.P50:0} per second p50 (observe {(options.Observe ? "on" : "off")})");
        }

        var report = new DaemonReport();
        report.AddComparison("HTTPS first byte, allowlist (proxy)", "egress_first_byte_proxied", firstProxied, "open policy (NAT)", firstDirect);
        report.AddComparison($"HTTPS download {mib} MiB, allowlist (proxy)", "egress_download_proxied", speedProxied, "open policy (NAT)", speedDirect);
        report.AddFigure("paddockd CPU per proxied MiB (whole run)", "egress_daemon_cpu_per_mib", daemonCpuPerMib);
        if (connections > 0)
        {
            var observe = options.Observe ? "on" : "off";
            report.AddFigure($"TCP connections per second from a sandbox (observe {observe})", $"egress_connections_per_second_observe_{observe}", rate);
            report.AddFigure($"paddockd CPU per 1000 connections (observe {observe})", $"egress_daemon_cpu_per_1000_connections_observe_{observe}", cpuPerThousand);
        }
        Console.Out.WriteLine();
        report.PrintTable(Console.Out);
        if (json)
        {
            report.PrintJson(Console.Out);
        }
        return 0;
    }

    /// <summary>The outside namespace: a veth to the host, the HTTPS and DNS server on <see cref="Address"/>.</summary>
    private sealed class Outside : IAsyncDisposable
    {
        private readonly string _netns = $"paddock-bench-out-{Environment.ProcessId}";
        private readonly string _veth = $"pbo{Environment.ProcessId % 1_000_000}";
        private readonly string _prefix = $"10.199.{Environment.ProcessId % 250 + 1}.";
        private readonly string _dir = Directory.CreateTempSubdirectory("paddock-bench-egress-").FullName;
        private Process? _server;

        public string Address => _prefix + "2";

        public static async Task<Outside> StartAsync(TextWriter log, CancellationToken cancellationToken)
        {
            var outside = new Outside();
            try
            {
                await outside.SetUpAsync(cancellationToken);
                log.WriteLine($"  outside namespace {outside._netns}: https://allowed.test and its DNS on {outside.Address}");
                return outside;
            }
            catch
            {
                await outside.DisposeAsync();
                throw;
            }
        }

        private async Task SetUpAsync(CancellationToken cancellationToken)
        {
            var cert = Path.Combine(_dir, "cert.pem");
            var key = Path.Combine(_dir, "key.pem");
            await RunAsync(cancellationToken, "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=allowed.test", "-days", "1", "-keyout", key, "-out", cert);
            await RunAsync(cancellationToken, "ip", "netns", "add", _netns);
            await RunAsync(cancellationToken, "ip", "link", "add", _veth, "type", "veth", "peer", "name", "eth0", "netns", _netns);
            await RunAsync(cancellationToken, "ip", "addr", "add", _prefix + "1/29", "dev", _veth);
            await RunAsync(cancellationToken, "ip", "link", "set", _veth, "up");
            await RunAsync(cancellationToken, "ip", "-n", _netns, "addr", "add", Address + "/29", "dev", "eth0");
            await RunAsync(cancellationToken, "ip", "-n", _netns, "link", "set", "eth0", "up");
            await RunAsync(cancellationToken, "ip", "-n", _netns, "route", "add", "default", "via", _prefix + "1");
            var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in (string[])["netns", "exec", _netns, "/usr/bin/python3", "-c", Server, Address, cert, key])
            {
                start.ArgumentList.Add(a);
            }
            _server = Process.Start(start)!;
            using var ready = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            ready.CancelAfter(TimeSpan.FromSeconds(30));
            if (await _server.StandardOutput.ReadLineAsync(ready.Token) != "ready")
            {
                throw new InvalidOperationException("the outside server did not start: " + await _server.StandardError.ReadToEndAsync(ready.Token));
            }
        }

        private static async Task RunAsync(CancellationToken cancellationToken, string file, params string[] args)
        {
            var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args)
            {
                start.ArgumentList.Add(a);
            }
            using var process = Process.Start(start)!;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(60));
            var error = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.StandardOutput.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed ({process.ExitCode}): {await error}");
            }
        }

        public async ValueTask DisposeAsync()
        {
            if (_server is { } server)
            {
                server.Kill(entireProcessTree: true);
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await server.WaitForExitAsync(wait.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                server.Dispose();
            }
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            foreach (var args in (string[][])[["link", "del", _veth], ["netns", "del", _netns]])
            {
                try
                {
                    await RunAsync(timeout.Token, "ip", args);
                }
                catch (InvalidOperationException)
                {
                    // Not made (a failed start) or already gone.
                }
            }
            Directory.Delete(_dir, recursive: true);
        }
    }
}
