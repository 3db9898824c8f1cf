using System.Globalization;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// A stand-in for "the internet" that the test makes itself: a network namespace with a veth pair to the host
/// (host end <see cref="Gateway"/>/29) and two addresses of its own, <see cref="Address"/> and <see cref="Other"/>,
/// where a small Python server answers on ports 80, 443 and 8080 with "outside PORT ADDRESS" and closes, and
/// echoes on port 9000 until the client closes; and a test resolver on <see cref="Resolver"/> port 53 (UDP and
/// TCP) that answers A questions: "allowed.test" and every name under "wild.test" are <see cref="Address"/>, every
/// other name under "test" (evil.test, ...) is <see cref="Other"/>, anything else NXDOMAIN; TTL 1 s. Every
/// question it gets is kept in <see cref="Questions"/>. Nothing is ever sent to an address this class did not
/// create. Disposing removes the namespace, the veth and the server.
/// </summary>
internal sealed class OutsideHost : IAsyncDisposable
{
    private const string Server = """
        import socket, sys, threading
        def serve(addr, port):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(64)
            while True:
                c, _ = s.accept()
                c.settimeout(5)
                try:
                    c.recv(65536)
                    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\noutside %d %s\n" % (port, addr.encode()))
                except OSError:
                    pass
                c.close()
        def echo(addr, port):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(64)
            def one(c):
                try:
                    while True:
                        data = c.recv(4096)
                        if not data:
                            break
                        c.sendall(data)
                except OSError:
                    pass
                c.close()
            while True:
                c, _ = s.accept()
                threading.Thread(target=one, args=(c,), daemon=True).start()
        def dns_answer(q):
            if len(q) < 12:
                return None
            i, labels = 12, []
            while i < len(q) and q[i] != 0:
                n = q[i]
                labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace").lower())
                i += 1 + n
            i += 1
            if i + 4 > len(q):
                return None
            qtype = int.from_bytes(q[i:i + 2], "big")
            name = ".".join(labels)
            print("question %s %d" % (name, qtype), flush=True)
            addr = ADDRESS if name == "allowed.test" or name.endswith(".wild.test") else OTHER if name.endswith(".test") else None
            answer = b""
            if addr and qtype == 1:
                answer = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x01\x00\x04" + socket.inet_aton(addr)
            header = q[:2] + bytes([0x84 | (q[2] & 0x01), 0x80 | (0 if addr else 3)]) + b"\x00\x01" + (b"\x00\x01" if answer else b"\x00\x00") + b"\x00\x00\x00\x00"
            return header + q[12:i + 4] + answer
        def dns_udp(addr):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, 53))
            while True:
                q, peer = s.recvfrom(4096)
                a = dns_answer(q)
                if a:
                    s.sendto(a, peer)
        def dns_tcp(addr):
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, 53)); s.listen(16)
            def one(c):
                c.settimeout(5)
                try:
                    while True:
                        n = c.recv(2)
                        if len(n) < 2:
                            break
                        q = b""
                        while len(q) < int.from_bytes(n, "big"):
                            chunk = c.recv(int.from_bytes(n, "big") - len(q))
                            if not chunk:
                                break
                            q += chunk
                        a = dns_answer(q)
                        if not a:
                            break
                        c.sendall(len(a).to_bytes(2, "big") + a)
                except OSError:
                    pass
                c.close()
            while True:
                c, _ = s.accept()
                threading.Thread(target=one, args=(c,), daemon=True).start()
        ADDRESS, OTHER, RESOLVER = sys.argv[1:4]
        threading.Thread(target=dns_udp, args=(RESOLVER,), daemon=True).start()
        threading.Thread(target=dns_tcp, args=(RESOLVER,), daemon=True).start()
        for a in (ADDRESS, OTHER):
            for p in (80, 443, 8080):
                threading.Thread(target=serve, args=(a, p), daemon=True).start()
            threading.Thread(target=echo, args=(a, 9000), daemon=True).start()
        print("ready", flush=True)
        threading.Event().wait()
        """;

    private readonly string _netns;
    private readonly string _hostInterface;
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _questions = new();
    private System.Diagnostics.Process? _server;
    private Task _reader = Task.CompletedTask;

    private OutsideHost(string netns, string hostInterface, string prefix)
    {
        _netns = netns;
        _hostInterface = hostInterface;
        Gateway = prefix + "1";
        Address = prefix + "2";
        Other = prefix + "3";
        Resolver = prefix + "4";
    }

    /// <summary>The test resolver's address (port 53): what the daemon under test is told to use.</summary>
    public string Resolver { get; }

    /// <summary>Every question the test resolver got so far, as "NAME TYPE" (lower case).</summary>
    public IReadOnlyCollection<string> Questions => _questions;

    /// <summary>The host's end of the veth (an address of the host: sandboxes must never reach it).</summary>
    public string Gateway { get; }

    public string Address { get; }

    public string Other { get; }

    /// <summary>
    /// <paramref name="octet"/> picks a /24 of 10.204.0.0/16 (per test process) for the outside link; <paramref name="tag"/>
    /// (a letter) tells apart two outside hosts of one test process (fixtures run in parallel).
    /// </summary>
    public static async Task<OutsideHost> CreateAsync(int octet, string tag = "")
    {
        var pid = Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        var host = new OutsideHost($"paddock-out-{pid}{tag}", $"po{pid}{tag}", $"10.204.{octet.ToString(CultureInfo.InvariantCulture)}.");
        try
        {
            await host.StartAsync();
            return host;
        }
        catch
        {
            await host.DisposeAsync();
            throw;
        }
    }

    private async Task StartAsync()
    {
        await DisposeAsync(); // what an aborted run of this process id left
        await Run("ip", "netns", "add", _netns);
        await Run("ip", "link", "add", _hostInterface, "type", "veth", "peer", "name", "eth0", "netns", _netns);
        await Run("ip", "addr", "add", Gateway + "/29", "dev", _hostInterface);
        await Run("ip", "link", "set", _hostInterface, "up");
        await Run("ip", "-n", _netns, "addr", "add", Address + "/29", "dev", "eth0");
        await Run("ip", "-n", _netns, "addr", "add", Other + "/29", "dev", "eth0");
        await Run("ip", "-n", _netns, "addr", "add", Resolver + "/29", "dev", "eth0");
        await Run("ip", "-n", _netns, "link", "set", "eth0", "up");
        await Run("ip", "-n", _netns, "link", "set", "lo", "up");
        await Run("ip", "-n", _netns, "route", "add", "default", "via", Gateway);

        var start = new System.Diagnostics.ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in (string[])["netns", "exec", _netns, "/usr/bin/python3", "-c", Server, Address, Other, Resolver])
        {
            start.ArgumentList.Add(a);
        }
        _server = System.Diagnostics.Process.Start(start)!;
        using var ready = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var line = await _server.StandardOutput.ReadLineAsync(ready.Token);
        if (line != "ready")
        {
            throw new InvalidOperationException("the outside server did not start: " + await _server.StandardError.ReadToEndAsync(ready.Token));
        }
        var output = _server.StandardOutput;
        _reader = Task.Run(async () =>
        {
            // Until the server ends (dispose kills it): each line is one question.
            while (await output.ReadLineAsync() is { } question)
            {
                if (question.StartsWith("question ", StringComparison.Ordinal))
                {
                    _questions.Enqueue(question["question ".Length..]);
                }
            }
        });
    }

    /// <summary>Connects from inside the outside namespace; "OK ..." with what came back, or "ERR ..." and the error's name.</summary>
    public async Task<string> ConnectFromOutsideAsync(string host, int port)
    {
        const string probe = """
            import socket, sys
            try:
                s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
                s.settimeout(5)
                print("OK " + s.recv(4096).decode("latin-1"))
            except Exception as e:
                print("ERR " + type(e).__name__)
            """;
        var result = await ExternalCommand.RunAsync("ip", ["netns", "exec", _netns, "/usr/bin/python3", "-c", probe, host, port.ToString(CultureInfo.InvariantCulture)],
            new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        return result.Succeeded ? result.StandardOutput.Trim() : throw new InvalidOperationException(result.Describe());
    }

    private static async Task Run(params string[] args)
    {
        var result = await ExternalCommand.RunAsync(args[0], args[1..], new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException(result.Describe());
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is { } server)
        {
            // Ends the server (ip execs python3, so this pid is python's).
            server.Kill(entireProcessTree: true);
            using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await server.WaitForExitAsync(wait.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await _reader.WaitAsync(wait.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            server.Dispose();
            _server = null;
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        if (Directory.Exists($"/sys/class/net/{_hostInterface}"))
        {
            await ExternalCommand.RunAsync("ip", ["link", "del", _hostInterface], timeout.Token);
        }
        if (File.Exists($"/run/netns/{_netns}"))
        {
            await ExternalCommand.RunAsync("ip", ["netns", "del", _netns], timeout.Token);
        }
    }
}
