using System.Globalization;
using System.Text;

namespace Paddock.Daemon.Native;

/// <summary>One line of /proc/self/mountinfo (proc(5)).</summary>
internal sealed record MountEntry(int Id, int ParentId, string Root, string MountPoint, string FsType, string Source, string SuperOptions);

/// <summary>The calling process's mount table, read from /proc/self/mountinfo.</summary>
internal static class MountTable
{
    public static IReadOnlyList<MountEntry> Read()
    {
        var entries = new List<MountEntry>();
        foreach (var line in File.ReadLines("/proc/self/mountinfo"))
        {
            if (Parse(line) is { } entry)
            {
                entries.Add(entry);
            }
        }
        return entries;
    }

    /// <summary>
    /// Mount points at or below <paramref name="directory"/>, deepest first (the order they must be unmounted in).
    /// </summary>
    public static IReadOnlyList<string> Under(string directory)
    {
        var prefix = directory.TrimEnd('/') + "/";
        return Read()
            .Select(e => e.MountPoint)
            .Where(m => m == directory.TrimEnd('/') || m.StartsWith(prefix, StringComparison.Ordinal))
            .Distinct(StringComparer.Ordinal)
            .OrderByDescending(m => m.Length)
            .ToList();
    }

    /// <summary>Whether <paramref name="path"/> is a mount point now.</summary>
    public static bool IsMountPoint(string path)
    {
        var trimmed = path.TrimEnd('/');
        return Read().Any(e => e.MountPoint == trimmed);
    }

    internal static MountEntry? Parse(string line)
    {
        // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue": a variable number of
        // optional fields ends at the lone "-".
        var fields = line.Split(' ');
        if (fields.Length < 10)
        {
            return null;
        }
        var separator = Array.IndexOf(fields, "-", 6);
        if (separator < 0 || separator + 3 > fields.Length)
        {
            return null;
        }
        return new MountEntry(
            int.Parse(fields[0], CultureInfo.InvariantCulture),
            int.Parse(fields[1], CultureInfo.InvariantCulture),
            Unescape(fields[3]),
            Unescape(fields[4]),
            fields[separator + 1],
            Unescape(fields[separator + 2]),
            separator + 3 < fields.Length ? fields[separator + 3] : "");
    }

    /// <summary>The kernel writes space, tab, newline and backslash in paths as \ooo octal escapes.</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal))
        {
            return field;
        }
        var bytes = new List<byte>(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1))
            {
                bytes.Add((byte)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(field[i].ToString()));
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static bool IsOctal(string s, int start) =>
        start + 3 <= s.Length && s[start] is >= '0' and <= '7' && s[start + 1] is >= '0' and <= '7' && s[start + 2] is >= '0' and <= '7';
}
