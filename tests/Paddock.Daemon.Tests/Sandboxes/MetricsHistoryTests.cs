using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Tests.Sandboxes;

public sealed class MetricsHistoryTests
{
    private static readonly DateTimeOffset T0 = DateTimeOffset.FromUnixTimeSeconds(1_800_000_000);

    private static SandboxUsage Sample(double seconds) => new(T0.AddSeconds(seconds), 1, 2, 100, 1000, 10, 100);

    private static MetricsHistory History(int samples = 5) =>
        new(null!, new DaemonOptions { MetricsSamples = samples, MetricsInterval = TimeSpan.Zero }, TimeProvider.System, NullLogger<MetricsHistory>.Instance, () => []);

    [Fact]
    public void A_range_returns_the_samples_within_it_in_whole_seconds()
    {
        var history = History();
        foreach (var s in new[] { 0, 1, 2.5, 3, 4 })
        {
            history.Record("a", Sample(s));
        }

        Assert.Equal([1, 2.5, 3], history.Samples("a", T0.AddSeconds(1), T0.AddSeconds(3)).Select(Seconds));
        // An end of second 2 includes a sample taken within that second (2.5), as the API's bounds are seconds.
        Assert.Equal([0, 1, 2.5], history.Samples("a", null, T0.AddSeconds(2)).Select(Seconds));
        Assert.Equal([3, 4], history.Samples("a", T0.AddSeconds(3), null).Select(Seconds));
        Assert.Empty(history.Samples("a", T0.AddSeconds(-100), T0.AddSeconds(-50)));
        Assert.Empty(history.Samples("other", null, null));
    }

    [Fact]
    public void Only_the_latest_samples_are_kept_in_order_and_a_late_older_one_is_dropped()
    {
        var history = History(samples: 3);
        for (var s = 0; s < 6; s++)
        {
            history.Record("a", Sample(s));
        }
        history.Record("a", Sample(4.5)); // an on-demand sample that lost the race with the sweep's

        Assert.Equal([3, 4, 5], history.Samples("a", null, null).Select(Seconds));
        history.Forget("a");
        Assert.Empty(history.Samples("a", null, null));
    }

    private static double Seconds(SandboxUsage u) => (u.Timestamp - T0).TotalSeconds;
}
