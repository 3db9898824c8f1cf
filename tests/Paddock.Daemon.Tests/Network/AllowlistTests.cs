using Paddock.Daemon.Networking;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// Issue 21: a domain allowlist that a sandbox cannot talk around, and DNS under the policy. The outside host has
/// two servers, <see cref="OutsideHost.Address"/> ("allowed.test" in its test resolver) and
/// <see cref="OutsideHost.Other"/> ("evil.test"), and the runtime's only DNS server is that test resolver.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class AllowlistTests(NetworkFixture fixture)
{
    private OutsideHost Outside => fixture.Outside;

    [Fact]
    public async Task A_listed_name_sent_to_another_address_ends_at_the_names_own_server()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.From(false, ["allowed.test"], null));

        // TLS with SNI allowed.test, sent to evil.test's address: it ends at allowed.test's server.
        var tls = await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build("allowed.test"));
        Assert.Contains($"outside 443 {Outside.Address}", tls, StringComparison.Ordinal);
        Assert.DoesNotContain(Outside.Other, tls, StringComparison.Ordinal);
        // The same for an HTTP Host header.
        var http = await sandbox.HttpAsync(Outside.Other, 80, "allowed.test");
        Assert.Contains($"outside 80 {Outside.Address}", http, StringComparison.Ordinal);
        Assert.DoesNotContain(Outside.Other, http, StringComparison.Ordinal);
        // And sent to its own address it still works.
        Assert.Contains($"outside 443 {Outside.Address}", await sandbox.ConnectAsync(Outside.Address, 443, ClientHello.Build("allowed.test")), StringComparison.Ordinal);

        // evil.test by name, a missing SNI, a garbled ClientHello, a request that is not HTTP: refused.
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build("evil.test")), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build(null)), StringComparison.Ordinal);
        var garbled = ClientHello.Build("allowed.test");
        garbled[6] = 0x7f; // the handshake's length no longer fits its record
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 443, garbled), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build("allowed.test\u0000.evil.test")), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 443, "\x16\x03\x01\x00\x05hello"u8.ToArray()), StringComparison.Ordinal);
        Assert.DoesNotContain("outside", await sandbox.ConnectAsync(Outside.Other, 80, "hello there\r\n\r\n"u8.ToArray()), StringComparison.Ordinal);
        var noHost = await sandbox.ConnectAsync(Outside.Other, 80, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"u8.ToArray());
        Assert.DoesNotContain("outside", noHost, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Allowed_addresses_next_to_names_are_reached_as_before_with_no_name_involved()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.From(false, ["allowed.test", Outside.Other], null));

        // An allowed address is reached directly, whatever name the connection carries (or none, on any port).
        Assert.Contains($"outside 443 {Outside.Other}", await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build("unlisted.test")), StringComparison.Ordinal);
        Assert.Contains($"outside 8080 {Outside.Other}", await sandbox.ConnectAsync(Outside.Other, 8080), StringComparison.Ordinal);
        // A listed name still goes where it resolves.
        Assert.Contains($"outside 80 {Outside.Address}", await sandbox.HttpAsync(Outside.Address, 80, "allowed.test"), StringComparison.Ordinal);
        Assert.Equal("RCODE 3 ANSWERS", await sandbox.QueryAsync("unlisted.test"));
    }

    [Fact]
    public async Task Names_resolve_in_the_sandbox_only_as_its_policy_allows()
    {
        await using var listed = await fixture.StartAsync(EgressPolicy.From(false, ["allowed.test", "*.wild.test"], null));
        await using var closed = await fixture.StartAsync(EgressPolicy.DenyAll);
        await using var open = await fixture.StartAsync(EgressPolicy.AllowAll);
        var secret = "s3cr3t-" + Guid.NewGuid().ToString("N")[..8];

        // Allowlist: listed names (and wildcards) resolve, over UDP and TCP; others do not, and never leave the host.
        Assert.Equal($"OK {Outside.Address}", await listed.ResolveAsync("allowed.test"));
        Assert.Equal($"OK {Outside.Address}", await listed.ResolveAsync("api.wild.test"));
        Assert.Equal($"RCODE 0 ANSWERS {Outside.Address}", await listed.QueryAsync("allowed.test", overTcp: true));
        Assert.StartsWith("ERR gaierror", await listed.ResolveAsync("evil.test"), StringComparison.Ordinal);
        Assert.Equal("RCODE 3 ANSWERS", await listed.QueryAsync($"{secret}.evil.test"));
        Assert.Equal("RCODE 3 ANSWERS", await listed.QueryAsync($"{secret}.evil.test", overTcp: true));
        // Nor can it ask an outside resolver itself: the address is denied like any other.
        Assert.StartsWith("ERR ", await listed.QueryAsync($"{secret}.direct.test", server: Outside.Resolver), StringComparison.Ordinal);

        // Closed: no answer at all, whatever the name.
        Assert.Equal("RCODE 5 ANSWERS", await closed.QueryAsync("allowed.test"));
        Assert.Equal("RCODE 5 ANSWERS", await closed.QueryAsync($"{secret}.closed.test", overTcp: true));
        Assert.StartsWith("ERR gaierror", await closed.ResolveAsync("allowed.test"), StringComparison.Ordinal);

        // Open: everything resolves.
        Assert.Equal($"OK {Outside.Other}", await open.ResolveAsync("evil.test"));
        Assert.Equal($"OK {Outside.Address}", await open.ResolveAsync("allowed.test"));

        // The test resolver saw the listed names and the open sandbox's, and not one question with the secret in it.
        Assert.Contains("allowed.test 1", Outside.Questions);
        Assert.Contains("evil.test 1", Outside.Questions);
        Assert.DoesNotContain(Outside.Questions, q => q.Contains(secret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Changing_the_policy_of_a_running_sandbox_changes_its_DNS_answers()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.DenyAll);
        var timeout = TestEnvironment.Timeout(TimeSpan.FromSeconds(30));

        Assert.Equal("RCODE 5 ANSWERS", await sandbox.QueryAsync("allowed.test"));
        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.From(false, ["allowed.test"], null), timeout);
        Assert.Equal($"RCODE 0 ANSWERS {Outside.Address}", await sandbox.QueryAsync("allowed.test"));
        Assert.Equal("RCODE 3 ANSWERS", await sandbox.QueryAsync("evil.test"));
        Assert.Contains($"outside 443 {Outside.Address}", await sandbox.ConnectAsync(Outside.Other, 443, ClientHello.Build("allowed.test")), StringComparison.Ordinal);
        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.AllowAll, timeout);
        Assert.Equal($"RCODE 0 ANSWERS {Outside.Other}", await sandbox.QueryAsync("evil.test"));
        await fixture.Runtime.UpdateNetworkAsync(sandbox.Id, EgressPolicy.DenyAll, timeout);
        Assert.Equal("RCODE 5 ANSWERS", await sandbox.QueryAsync("evil.test", overTcp: true));
    }

    [Fact]
    public async Task The_sandbox_resolv_conf_names_only_the_daemons_forwarder()
    {
        await using var sandbox = await fixture.StartAsync(EgressPolicy.AllowAll);

        var resolvConf = (await sandbox.RunAsync("grep -v '^#' /etc/resolv.conf")).Stdout;
        Assert.Equal($"nameserver {fixture.Runtime.Network!.ResolverAddress}\noptions edns0\n", resolvConf);
        Assert.Equal($"OK {Outside.Other}", await sandbox.ResolveAsync("evil.test"));
        // The forwarder's own port on the host is reachable only through the redirect, never directly.
        var network = fixture.Runtime.Network;
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(sandbox.Link.HostAddress.ToString(), network.DnsPort), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await sandbox.QueryAsync("evil.test", server: sandbox.Link.HostAddress.ToString()), StringComparison.Ordinal);
    }
}
