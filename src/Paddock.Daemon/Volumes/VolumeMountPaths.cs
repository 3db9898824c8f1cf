using System.Text.Json;
using System.Text.RegularExpressions;

namespace Paddock.Daemon.Volumes;

/// <summary>A create's <c>volumeMounts</c> entry, checked: a volume name and where it appears in the sandbox.</summary>
internal sealed record VolumeMountRequest(string Name, string Path);

/// <summary>
/// The checks on volume names and on the paths a create mounts volumes at. A path is where a host directory is bound
/// into the sandbox, so it must not hide what the sandbox and its agent need: /proc, /dev, /sys (the kernel's views),
/// the agent's bundle (/.paddock), the files each tier binds itself (/etc/hosts, /etc/hostname, /etc/resolv.conf), or a
/// directory above any of them (/, /etc). Paths are absolute and normalized (no '.', '..', '//' or trailing '/'),
/// so that two spellings of one directory cannot pass as two mounts, and no volume may sit inside another.
/// </summary>
internal static partial class VolumeMountPaths
{
    public const int MaxMounts = 16;
    public const int MaxPathLength = 1024;
    public const int MaxNameLength = 64;

    private static readonly string[] Reserved =
        ["/proc", "/dev", "/sys", "/.paddock", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

    // E2B's NewVolume.name pattern (spec/openapi.yml).
    [GeneratedRegex("^[a-zA-Z0-9_-]+$")]
    private static partial Regex NamePattern();

    /// <summary>Throws a 400 unless <paramref name="name"/> is a valid volume name.</summary>
    public static string ValidateName(string? name, string field = "name")
    {
        if (string.IsNullOrEmpty(name))
        {
            throw VolumeException.BadRequest($"{field} is required");
        }
        if (name.Length > MaxNameLength || !NamePattern().IsMatch(name))
        {
            throw VolumeException.BadRequest($"{field} '{Shorten(name)}' is not a valid volume name: use 1-{MaxNameLength} letters, digits, '_' or '-'");
        }
        return name;
    }

    /// <summary>Parses and checks a create's <c>volumeMounts</c> (E2B's <c>[{name, path}]</c>); empty when absent.</summary>
    public static IReadOnlyList<VolumeMountRequest> Parse(JsonElement? volumeMounts)
    {
        if (volumeMounts is not { } element || element.ValueKind == JsonValueKind.Null)
        {
            return [];
        }
        if (element.ValueKind != JsonValueKind.Array)
        {
            throw VolumeException.BadRequest("volumeMounts must be an array of {name, path}");
        }
        if (element.GetArrayLength() > MaxMounts)
        {
            throw VolumeException.BadRequest($"volumeMounts: at most {MaxMounts} volumes per sandbox");
        }
        var mounts = new List<VolumeMountRequest>();
        var index = 0;
        foreach (var item in element.EnumerateArray())
        {
            var field = $"volumeMounts[{index++}]";
            if (item.ValueKind != JsonValueKind.Object)
            {
                throw VolumeException.BadRequest($"{field} must be an object {{name, path}}");
            }
            var name = item.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() : null;
            var path = item.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null;
            mounts.Add(new VolumeMountRequest(ValidateName(name, field + ".name"), ValidatePath(path, field + ".path")));
        }
        for (var i = 0; i < mounts.Count; i++)
        {
            for (var j = 0; j < mounts.Count; j++)
            {
                if (i == j)
                {
                    continue;
                }
                if (mounts[i].Path == mounts[j].Path && i < j)
                {
                    throw VolumeException.BadRequest($"volumeMounts: two volumes at {mounts[i].Path}");
                }
                if (IsUnder(mounts[j].Path, mounts[i].Path))
                {
                    throw VolumeException.BadRequest($"volumeMounts: {mounts[j].Path} is inside {mounts[i].Path}; volumes cannot be nested");
                }
            }
        }
        return mounts;
    }

    /// <summary>Throws a 400 unless <paramref name="path"/> is a place a volume may be mounted at.</summary>
    public static string ValidatePath(string? path, string field)
    {
        if (string.IsNullOrEmpty(path))
        {
            throw VolumeException.BadRequest($"{field} is required");
        }
        if (path.Length > MaxPathLength)
        {
            throw VolumeException.BadRequest($"{field} is longer than {MaxPathLength} characters");
        }
        if (path.Any(char.IsControl))
        {
            throw VolumeException.BadRequest($"{field} contains a control character");
        }
        if (!path.StartsWith('/'))
        {
            throw VolumeException.BadRequest($"{field} '{Shorten(path)}' must be an absolute path");
        }
        var parts = path[1..].Split('/');
        if (path == "/" || parts.Any(p => p.Length == 0 || p == "." || p == ".."))
        {
            throw VolumeException.BadRequest(path == "/"
                ? $"{field}: a volume cannot be mounted at /"
                : $"{field} '{Shorten(path)}' must be normalized: no '.', '..', empty components or trailing '/'");
        }
        foreach (var reserved in Reserved)
        {
            if (path == reserved || IsUnder(path, reserved) || IsUnder(reserved, path))
            {
                throw VolumeException.BadRequest($"{field} '{Shorten(path)}' would hide {reserved}, which the sandbox needs");
            }
        }
        return path;
    }

    private static bool IsUnder(string path, string parent) => path.StartsWith(parent + "/", StringComparison.Ordinal);

    private static string Shorten(string text) => text.Length > 80 ? text[..80] + "…" : text;
}
