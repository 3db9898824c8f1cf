using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// Egress of real runc sandboxes to an <see cref="OutsideHost"/> the test made, under each kind of policy, and the
/// guards that hold under every policy: the host and other sandboxes are out of reach.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class EgressTests(NetworkFixture fixture)
{
    private OutsideHost Outside => fixture.Outside;

    [Fact]
    public async Task Allow_all_reaches_the_outside_and_deny_all_does_not()
    {
        await using var open = await fixture.StartAsync(EgressPolicy.AllowAll);
        await using var closed = await fixture.StartAsync(EgressPolicy.DenyAll);

        Assert.Equal($"OK HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\noutside 8080 {Outside.Address}", await open.ConnectAsync(Outside.Address, 8080));
        Assert.StartsWith("ERR ", await closed.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await closed.HttpAsync(Outside.Address, 80, "allowed.test"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cidr_allow_and_deny_lists_pick_addresses()
    {
        await using var allowOne = await fixture.StartAsync(EgressPolicy.From(null, [Outside.Address], ["0.0.0.0/0"]));
        await using var denyOne = await fixture.StartAsync(EgressPolicy.From(null, null, [Outside.Other + "/32"]));

        Assert.Contains($"outside 8080 {Outside.Address}", await allowOne.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await allowOne.ConnectAsync(Outside.Other, 8080), StringComparison.Ordinal);
        Assert.Contains($"outside 8080 {Outside.Address}", await denyOne.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await denyOne.ConnectAsync(Outside.Other, 8080), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_domain_allowlist_passes_listed_HTTP_hosts_and_TLS_server_names_only()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.From(false, ["allowed.test", "*.wild.test"], null));

        Assert.Contains($"outside 80 {Outside.Address}", await sandbox.HttpAsync(Outside.Address, 80, "allowed.test"), StringComparison.Ordinal);
        Assert.Contains($"outside 80 {Outside.Address}", await sandbox.HttpAsync(Outside.Address, 80, "api.wild.test:80"), StringComparison.Ordinal);
        var refused = await sandbox.HttpAsync(Outside.Address, 80, "other.test");
        Assert.StartsWith("OK HTTP/1.1 403 Forbidden", refused, StringComparison.Ordinal);
        Assert.DoesNotContain("outside", refused, StringComparison.Ordinal);

        Assert.Contains($"outside 443 {Outside.Address}", await sandbox.ConnectAsync(Outside.Address, 443, ClientHello.Build("allowed.test")), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Address, 443, ClientHello.Build("other.test")), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Address, 443, ClientHello.Build(null)), StringComparison.Ordinal);
        // Other ports are not proxied: the address is denied.
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_policy_changed_at_run_time_takes_effect()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.DenyAll);
        var timeout = TestEnvironment.Timeout(TimeSpan.FromSeconds(30));

        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.AllowAll, timeout);
        Assert.Contains("outside 8080", await sandbox.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.From(null, null, [Outside.Address]), timeout);
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        Assert.Contains("outside 8080", await sandbox.ConnectAsync(Outside.Other, 8080), StringComparison.Ordinal);
        // And the record a restarted daemon re-applies says so.
        Assert.Equal([IpNetwork.Parse(Outside.Address)], SandboxLink.TryRead(Path.Combine(fixture.Options.NetworkStateDirectory, sandbox.Id + ".json"))!.Policy.DenyOut);
    }

    [Fact]
    public async Task A_policy_change_also_stops_a_connection_that_is_open()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.AllowAll);
        // Opens one connection to the echo port, echoes "a", then waits for /tmp/go and tries "b" on the same connection.
        var script = $"import socket, os, time\ns = socket.create_connection(('{Outside.Address}', 9000), timeout=5)\ns.sendall(b'a')\n"
            + "open('/tmp/first', 'w').write(s.recv(10).decode())\n"
            + "for _ in range(600):\n    if os.path.exists('/tmp/go'): break\n    time.sleep(0.05)\n"
            + "try:\n    s.sendall(b'b'); r = s.recv(10).decode() or 'closed'\nexcept Exception as e:\n    r = 'ERR ' + type(e).__name__\n"
            + "open('/tmp/second.tmp', 'w').write(r); os.rename('/tmp/second.tmp', '/tmp/second')\n";
        var (_, stream) = await AgentCalls.StartAsync(fixture.Runtime, sandbox.Id, "/usr/bin/python3", ["-c", script], "user", TimeSpan.FromSeconds(30));
        using var _ = stream;
        await WaitUntilAsync(async () => (await sandbox.RunAsync("cat /tmp/first 2>/dev/null")).Stdout == "a");

        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.DenyAll, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        await sandbox.RunAsync("touch /tmp/go");
        await WaitUntilAsync(async () => (await sandbox.RunAsync("cat /tmp/second 2>/dev/null")).Stdout.Length > 0);

        Assert.Equal("ERR TimeoutError", (await sandbox.RunAsync("cat /tmp/second")).Stdout);
    }

    [Fact]
    public async Task The_host_is_never_reachable_whatever_the_policy()
    {
        // A listener on all of the host's addresses, as the daemon's port is.
        using var listener = new TcpListener(IPAddress.Any, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var accepted = listener.AcceptSocketAsync();
        await using var sandbox = await fixture.StartAsync(EgressPolicy.From(null, ["0.0.0.0/0"], null));
        var link = sandbox.Link;

        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(link.HostAddress.ToString(), port), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(Outside.Gateway, port), StringComparison.Ordinal);
        // The proxy's port is reachable only by redirection, never directly.
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(link.HostAddress.ToString(), fixture.Runtime.Network!.ProxyPort), StringComparison.Ordinal);
        // 127.0.0.1 in a sandbox is the sandbox's own loopback.
        Assert.StartsWith("ERR ConnectionRefusedError", await sandbox.ConnectAsync("127.0.0.1", port), StringComparison.Ordinal);
        Assert.False(accepted.IsCompleted, "the host's listener accepted a connection from the sandbox");
        // The test can fail: the same listener is reachable from the host.
        using var self = new TcpClient();
        await self.ConnectAsync(IPAddress.Loopback, port, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        (await accepted.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
    }

    [Fact]
    public async Task Another_sandbox_is_never_reachable()
    {
        await using var target = await fixture.StartAsync(EgressPolicy.AllowAll);
        await using var attacker = await fixture.StartAsync(EgressPolicy.From(null, ["0.0.0.0/0"], null));
        var (_, server) = await AgentCalls.StartAsync(fixture.Runtime, target.Id, "/usr/bin/python3",
            ["-c", "import socket\ns=socket.socket();s.bind(('0.0.0.0',8000));s.listen()\nwhile True:\n c,_=s.accept();c.settimeout(5);c.recv(4096);c.sendall(b'target');c.close()"],
            "user", TimeSpan.FromSeconds(30));
        using var _ = server;
        var address = target.Link.SandboxAddress.ToString();

        // Reachable inside the target itself (so the probe below can fail), not from the other sandbox.
        await WaitUntilAsync(async () => (await target.ConnectAsync("127.0.0.1", 8000)).Contains("target", StringComparison.Ordinal));
        Assert.Equal("OK target", await target.ConnectAsync(address, 8000));
        Assert.StartsWith("ERR ", await attacker.ConnectAsync(address, 8000), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await attacker.ConnectAsync(target.Link.HostAddress.ToString(), 8000), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nothing_comes_in_from_the_outside_on_the_link()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.AllowAll);
        var (_, server) = await AgentCalls.StartAsync(fixture.Runtime, sandbox.Id, "/usr/bin/python3",
            ["-c", "import socket\ns=socket.socket();s.bind(('0.0.0.0',8000));s.listen()\nwhile True:\n c,_=s.accept();c.settimeout(5);c.recv(4096);c.sendall(b'inside');c.close()"],
            "user", TimeSpan.FromSeconds(30));
        using var _ = server;
        var address = sandbox.Link.SandboxAddress.ToString();

        await WaitUntilAsync(async () => (await sandbox.ConnectAsync(address, 8000)).Contains("inside", StringComparison.Ordinal));
        // Inbound traffic comes only through the daemon's proxy (with the traffic token unless public), never on the link.
        Assert.StartsWith("ERR ", await Outside.ConnectFromOutsideAsync(address, 8000), StringComparison.Ordinal);
        // While the sandbox's own connections out are answered.
        Assert.Contains("outside 8080", await sandbox.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Destroy_and_crash_cleanup_remove_the_link_rules_and_record()
    {
        var sandbox = await fixture.StartAsync(EgressPolicy.AllowAll);
        var first = sandbox.Link;
        await sandbox.DisposeAsync();
        await AssertGoneAsync(first, sandbox.Id);

        // A crash: the sandbox's init dies, and a new daemon instance finds what is left.
        var crashed = await fixture.StartAsync(EgressPolicy.DenyAll);
        var link = crashed.Link;
        var pid = int.Parse(await File.ReadAllTextAsync(Path.Combine(fixture.Options.SandboxesDirectory, crashed.Id, "init.pid")), CultureInfo.InvariantCulture);
        Assert.Equal(0, Signals.Send(pid, Signals.SIGKILL));
        await WaitUntilAsync(() => Task.FromResult(!Directory.Exists($"/proc/{pid}")));
        Assert.True(Directory.Exists($"/sys/class/net/{link.HostInterface}"), "the link should outlive the sandbox's processes (its namespace is bound)");
        using var restarted = fixture.NewRuntime();
        var removed = await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Contains(crashed.Id, removed);
        await AssertGoneAsync(link, crashed.Id);
        // The fixture's runtime still has the link in memory; its detach must be a no-op now.
        await fixture.Runtime.DestroyAsync(crashed.Id, TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task A_table_removed_behind_the_daemons_back_is_rebuilt_with_its_guards_before_a_link_is_added()
    {
        await using var before = await fixture.StartAsync(EgressPolicy.DenyAll);
        await fixture.Runtime.Network!.RemoveTableAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        await using var after = await fixture.StartAsync(EgressPolicy.DenyAll);

        var table = await ExternalCommand.RunAsync("nft", ["list", "table", "inet", fixture.Options.Network!.TableName], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        Assert.Contains("chain guard_input", table.StandardOutput, StringComparison.Ordinal);
        Assert.Contains($"\"{before.Link.HostInterface}\" : jump f{before.Link.Slot}", table.StandardOutput, StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await before.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await after.ConnectAsync(Outside.Address, 8080), StringComparison.Ordinal);
    }

    private async Task AssertGoneAsync(SandboxLink link, string sandboxId)
    {
        Assert.False(Directory.Exists($"/sys/class/net/{link.HostInterface}"), $"{link.HostInterface} is still there");
        Assert.False(File.Exists(Path.Combine(fixture.Options.NetworkStateDirectory, sandboxId + ".json")));
        var table = await ExternalCommand.RunAsync("nft", ["list", "table", "inet", fixture.Options.Network!.TableName], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        Assert.True(table.Succeeded, table.Describe());
        Assert.DoesNotContain($"chain f{link.Slot} ", table.StandardOutput, StringComparison.Ordinal);
        Assert.DoesNotContain($"\"{link.HostInterface}\"", table.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("chain guard_forward", table.StandardOutput, StringComparison.Ordinal);
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        // Bounded: 100 tries, 100 ms apart.
        for (var i = 0; i < 100; i++)
        {
            if (await condition())
            {
                return;
            }
            await Task.Delay(100);
        }
        Assert.Fail("the condition did not become true within 100 tries");
    }
}
