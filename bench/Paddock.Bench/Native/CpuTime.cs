using System.Globalization;
using System.Runtime.InteropServices;

namespace Paddock.Bench.Native;

/// <summary>
/// CPU time (user + system) of this process, of its reaped children, and of another process. On a shared, loaded
/// machine wall-clock throughput depends on how much of the CPU the scheduler lends each side; CPU time per byte does
/// much less, so the bench reports both.
/// </summary>
internal static unsafe partial class CpuTime
{
    private const int RUSAGE_SELF = 0;
    private const int RUSAGE_CHILDREN = -1;
    private const int SC_CLK_TCK = 2;

    private static readonly double TicksPerSecond = sysconf(SC_CLK_TCK) is > 0 and var ticks ? ticks : 100;

    /// <summary>This process, all threads.</summary>
    public static TimeSpan Self() => Usage(RUSAGE_SELF);

    /// <summary>Every child this process has reaped so far (and what they reaped): a delta around a spawn-and-wait is that run's cost.</summary>
    public static TimeSpan ReapedChildren() => Usage(RUSAGE_CHILDREN);

    /// <summary>
    /// Another process's own CPU time (all threads) and that of the children it has reaped, from /proc/PID/stat
    /// (utime, stime, cutime, cstime; clock ticks, so 10 ms resolution: use deltas over runs of a second or more).
    /// </summary>
    public static (TimeSpan Own, TimeSpan ReapedChildren) OfProcess(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        // The command name (field 2) is in parentheses and may hold spaces; the fields after it are plain numbers.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        // fields[0] is field 3 (state), so field N is fields[N - 3].
        double Field(int n) => double.Parse(fields[n - 3], CultureInfo.InvariantCulture);
        return (TimeSpan.FromSeconds((Field(14) + Field(15)) / TicksPerSecond), TimeSpan.FromSeconds((Field(16) + Field(17)) / TicksPerSecond));
    }

    private static TimeSpan Usage(int who)
    {
        var usage = stackalloc long[18]; // struct rusage: two timevals, then 14 longs
        if (getrusage(who, usage) != 0)
        {
            throw new IOException($"getrusage failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }
        var micros = (usage[0] * 1_000_000) + usage[1] + (usage[2] * 1_000_000) + usage[3];
        return TimeSpan.FromMicroseconds(micros);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getrusage(int who, long* usage);

    [LibraryImport("libc")]
    private static partial long sysconf(int name);
}
