using System.Globalization;

namespace Paddock.Client.Tests;

/// <summary>
/// Whether a process is the one listening on a loopback TCP port. Helpers on this machine run tests at the same
/// time; a free port picked by one can be taken by another before the child binds it, and a health check would then
/// pass against someone else's server. So fixtures check who owns the port (/proc/net/tcp and /proc/PID/fd).
/// </summary>
internal static class PortOwner
{
    public static bool IsListening(int pid, int port)
    {
        var inodes = ListeningInodes(port);
        if (inodes.Count == 0)
        {
            return false;
        }
        try
        {
            foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
            {
                var target = new FileInfo(fd).LinkTarget;
                // "socket:[12345]"
                if (target is { } t && t.StartsWith("socket:[", StringComparison.Ordinal) && inodes.Contains(t[8..^1]))
                {
                    return true;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false; // the process went away while we looked
        }
        return false;
    }

    private static HashSet<string> ListeningInodes(int port)
    {
        var inodes = new HashSet<string>(StringComparer.Ordinal);
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" })
        {
            if (!File.Exists(table))
            {
                continue;
            }
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
                var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (f.Length < 10 || f[3] != "0A")
                {
                    continue; // not LISTEN
                }
                var colon = f[1].LastIndexOf(':');
                if (int.Parse(f[1][(colon + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture) == port)
                {
                    inodes.Add(f[9]);
                }
            }
        }
        return inodes;
    }
}
