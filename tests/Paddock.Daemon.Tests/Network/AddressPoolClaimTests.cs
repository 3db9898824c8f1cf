using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// Two daemons on one host never hand out the same sandbox address: a derived pool moves off another daemon's, a
/// configured one leaves the other's addresses alone, a restart takes its block back, and the lines of ended
/// processes do not count. Each test has its own registry file, so nothing here touches a real daemon's.
/// </summary>
public sealed class AddressPoolClaimTests : IDisposable
{
    private readonly TempDir _dir = new();

    private string Registry => Path.Combine(_dir.Path, "registry");

    private string State(string name) => Path.Combine(_dir.Path, name);

    private static NetworkOptions Derived(string pool) => new() { Pool = pool, PoolRange = "10.250.0.0/20" };

    private AddressPoolClaim Take(NetworkOptions options, string state) =>
        AddressPoolClaim.Take(options, State(state), NullLogger.Instance, Registry);

    [Fact]
    public void A_derived_pool_moves_off_a_block_another_daemon_holds_and_a_restart_takes_its_block_back()
    {
        using (var first = Take(Derived("10.250.4.0/22"), "a"))
        {
            Assert.Equal("10.250.4.0/22", first.Pool.ToString());
            using (var second = Take(Derived("10.250.4.0/22"), "b"))
            {
                Assert.Equal("10.250.8.0/22", second.Pool.ToString());
                // The range wraps: the last block's neighbour is the first.
                using var third = Take(Derived("10.250.12.0/22"), "c");
                Assert.Equal("10.250.12.0/22", third.Pool.ToString());
                using var fourth = Take(Derived("10.250.12.0/22"), "d");
                Assert.Equal("10.250.0.0/22", fourth.Pool.ToString());
                var full = Assert.Throws<InvalidOperationException>(() => Take(Derived("10.250.4.0/22"), "e"));
                Assert.Contains("10.250.0.0/20", full.Message, StringComparison.Ordinal);
            }
            Assert.Equal("10.250.8.0/22\n", File.ReadAllText(Path.Combine(State("b"), AddressPoolClaim.RememberedFile)));
        }
        // Both gone: b's derived block is free, but b restarts on the block its links were made in.
        using var again = Take(Derived("10.250.4.0/22"), "b");
        Assert.Equal("10.250.8.0/22", again.Pool.ToString());
        Assert.Single(Lines());
    }

    [Fact]
    public void The_same_state_directory_in_one_process_is_one_daemon()
    {
        using var first = Take(Derived("10.250.4.0/22"), "a");
        using var again = Take(Derived("10.250.4.0/22"), "a");
        Assert.Equal(first.Pool, again.Pool);
    }

    [Fact]
    public void A_configured_pool_stays_but_leaves_alone_the_addresses_another_daemon_claimed_first()
    {
        using var derived = Take(Derived("10.250.4.0/22"), "a");
        using var configured = Take(new NetworkOptions { Pool = "10.250.0.0/16" }, "b");
        Assert.Equal("10.250.0.0/16", configured.Pool.ToString());
        Assert.True(configured.Holds(Address("10.250.3.255")));
        Assert.False(configured.Holds(Address("10.250.4.0")));
        Assert.False(configured.Holds(Address("10.250.7.255")));
        Assert.True(configured.Holds(Address("10.250.8.0")));
        Assert.True(derived.Holds(Address("10.250.4.3")));
        // A derived pool started after it moves out of the whole configured range.
        var late = Assert.Throws<InvalidOperationException>(() => Take(Derived("10.250.8.0/22"), "c"));
        Assert.Contains("another paddockd", late.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Another_process_line_counts_while_it_runs_and_is_dropped_once_it_has_ended()
    {
        using var sleeper = Process.Start(new ProcessStartInfo("sleep", "60"))!;
        try
        {
            var started = ProcessStat.StartTime(sleeper.Id)!.Value;
            File.WriteAllText(Registry, string.Create(CultureInfo.InvariantCulture,
                $"# written as another daemon would\n10.250.4.0/22 {sleeper.Id} {started} /var/lib/other\n10.250.8.0/22 {sleeper.Id} {started + 1} /var/lib/reused-pid\n"));
            using (var claim = Take(Derived("10.250.4.0/22"), "a"))
            {
                // The second line's process started at another time: its pid was given to another, and the line is stale.
                Assert.Equal("10.250.8.0/22", claim.Pool.ToString());
            }
            Assert.Equal(["10.250.4.0/22"], Lines().Select(l => l.Split(' ')[0]));
            sleeper.Kill();
            sleeper.WaitForExit(10_000);
            using var after = Take(Derived("10.250.4.0/22"), "b");
            Assert.Equal("10.250.4.0/22", after.Pool.ToString());
            Assert.Equal([string.Create(CultureInfo.InvariantCulture, $"10.250.4.0/22 {Environment.ProcessId}")],
                Lines().Select(l => string.Join(' ', l.Split(' ')[..2])));
        }
        finally
        {
            if (!sleeper.HasExited)
            {
                sleeper.Kill();
            }
        }
    }

    [Fact]
    public void Without_a_usable_registry_the_pool_is_used_as_configured()
    {
        File.WriteAllText(Path.Combine(_dir.Path, "not-a-directory"), "");
        using var claim = AddressPoolClaim.Take(Derived("10.250.4.0/22"), State("a"), NullLogger.Instance, Path.Combine(_dir.Path, "not-a-directory", "registry"));
        Assert.Equal("10.250.4.0/22", claim.Pool.ToString());
        Assert.True(claim.Holds(Address("10.250.4.1")));
    }

    private string[] Lines() => File.ReadAllLines(Registry).Where(l => !l.StartsWith('#')).ToArray();

    private static uint Address(string text) => IpNetwork.ToUInt32(System.Net.IPAddress.Parse(text));

    public void Dispose() => _dir.Dispose();
}
