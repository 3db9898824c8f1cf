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
        string stat;
        try
        {
            stat = File.ReadAllText($"/proc/{pid.ToString(CultureInfo.InvariantCulture)}/stat");
        }
        catch (IOException)
        {
            return false; // no such process, or it went while being read (ESRCH)
        }
        // After the command name, which may hold spaces and parentheses: field 3 (state) ... field 22 (starttime).
        var fields = stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length < 20 || fields[0] is "Z" or "X")
        {
            return false;
        }
        return startTime is not { } expected
            || (ulong.TryParse(fields[19], NumberStyles.None, CultureInfo.InvariantCulture, out var started) && started == expected);
    }
}
