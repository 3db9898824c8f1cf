using Paddock.Soak;
using Xunit.Abstractions;

namespace Paddock.Security.Tests;

/// <summary>
/// The short soak of issue 5 for CI: 8 clients for 30 s of mixed create / run / write+read / kill against a real
/// paddockd, then zero failed operations, nothing left on the host, and the daemon's memory not run away. The full
/// figure (50 clients, 5 minutes, within 20%) is <c>bench/run soak</c>.
/// </summary>
[Collection(BatteryCollection.Name)] // not in parallel with the battery: its load and its host counts are its own
public sealed class SoakTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_short_soak_has_no_failed_operation_no_leak_and_bounded_daemon_memory()
    {
        await using var daemon = await PaddockdProcess.StartAsync();
        var log = new StringWriter();
        var run = new SoakRun(daemon.Url, daemon.ApiKey, daemon.ResidentBytes, log);
        using var bound = new CancellationTokenSource(TimeSpan.FromMinutes(10));
        // On gVisor each create costs more (a Sentry, a gofer and runsc's own start): measured 2026-12-06 on this
        // 2-core machine under other engineers' builds, the 8 clients' first creates took the whole 30 s and the mix
        // never ran. A longer run there keeps the same checks; the runc run stays 30 s.
        var gvisor = Environment.GetEnvironmentVariable("PADDOCK_ISOLATION") == "gvisor";
        var options = gvisor
            ? new SoakOptions(Clients: 8, Duration: TimeSpan.FromSeconds(90), WarmUp: TimeSpan.FromSeconds(30))
            : new SoakOptions(Clients: 8, Duration: TimeSpan.FromSeconds(30), WarmUp: TimeSpan.FromSeconds(10));
        var result = await run.RunAsync(options, bound.Token);
        output.WriteLine(log.ToString());
        output.WriteLine(result.ToString());

        Assert.True(result.TotalFailures == 0, $"{result}; daemon log: {daemon.Log}");
        Assert.True(result.Operations["create"] >= 8 && result.Operations["run"] > 0 && result.Operations["files"] > 0, "the mix did not run: " + result);
        Assert.Equal(0, result.SandboxesStillListed);
        Assert.True(daemon.IsAlive, "paddockd died: " + daemon.Log);
        var left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
        Assert.True(left == HostLeftovers.None, $"left on the host after the soak: {left}");
        // 30 s is too short for the 20% aim of the 5-minute run (the runtime's heap still settles); a doubling
        // after the warm-up is a leak all the same.
        Assert.True(result.RssEndBytes < 2 * result.RssWarmBytes, "paddockd's memory ran away: " + result);
    }
}
