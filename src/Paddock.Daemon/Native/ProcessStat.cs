using System.Globalization;

namespace Paddock.Daemon.Native;

/// <summary>What /proc/PID/stat tells about a process: whether it runs, and whether it is the one that started when expected.</summary>
internal static class ProcessStat
{
    /// <summary>
    /// Whether <paramref name="pid"/> runs: it exists and is neither a zombie nor dead (a sandbox's init that has exited
    /// stays a zombie until the host's init reaps it). With <paramref name="startTime"/> (clock ticks after boot, field 22,
    /// as runc records it), also that it is the process that started then, not a later one that was given its pid.
    /// </summary>
    public static bool IsRunning(long pid, ulong? startTime = null)
    {
        if (Fields(pid) is not { } fields || fields[0] is "Z" or "X")
        {
            return false;
        }
        return startTime is not { } expected || StartTimeOf(fields) == expected;
    }

    /// <summary>When <paramref name="pid"/> started (clock ticks after boot, field 22), or null when there is no such process.</summary>
    public static ulong? StartTime(long pid) => Fields(pid) is { } fields ? StartTimeOf(fields) : null;

    private static ulong? StartTimeOf(string[] fields) =>
        ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var started) ? started : null;

    /// <summary>The fields after the command name, from field 3 (state) on; null when there is no such process.</summary>
    private static string[]? Fields(long pid)
    {
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (IOException)
        {
            return null; // no such process, or it went while being read (ESRCH)
        }
        // The command name may hold spaces and parentheses: the fields start after its last ')'.
        var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return fields.Length < 20 ? null : fields;
    }
}
