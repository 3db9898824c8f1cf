using System.Diagnostics;
using System.Globalization;

namespace Paddock.Bench.Daemon;

/// <summary>The whole host's CPU use, from the first line of /proc/stat.</summary>
internal static class HostCpu
{
    /// <summary>The host counts as quiet when at most this share of its CPU time was busy over <see cref="QuietWindow"/>.</summary>
    public const double QuietBusyShare = 0.15;

    public static readonly TimeSpan QuietWindow = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Waits until one <see cref="QuietWindow"/> had at most <see cref="QuietBusyShare"/> of the CPUs busy; false when
    /// <paramref name="limit"/> passed first (a machine loaded by something else never gets quiet).
    /// </summary>
    public static async Task<bool> WaitUntilQuietAsync(TimeSpan limit, CancellationToken cancellationToken)
    {
        var waited = Stopwatch.StartNew();
        var before = Read();
        while (waited.Elapsed < limit)
        {
            await Task.Delay(QuietWindow, cancellationToken);
            var after = Read();
            var total = after.Total - before.Total;
            if (total > 0 && (double)(after.Busy - before.Busy) / total <= QuietBusyShare)
            {
                return true;
            }
            before = after;
        }
        return false;
    }

    /// <summary>The share of all cores' time that was busy between two <see cref="Read"/>s (whatever ran: other helpers too).</summary>
    public static double BusyShare((long Busy, long Total) before, (long Busy, long Total) after) =>
        after.Total > before.Total ? (double)(after.Busy - before.Busy) / (after.Total - before.Total) : double.NaN;

    public static (long Busy, long Total) Read()
    {
        // cpu  user nice system idle iowait irq softirq steal guest guest_nice (guest time is inside user already)
        var line = File.ReadLines("/proc/stat").First();
        var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(8)
            .Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        var idle = fields[3] + fields[4];
        var total = fields.Sum();
        return (total - idle, total);
    }
}
