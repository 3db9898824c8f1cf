using System.Text;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// Turns the path a caller sends into the absolute path the agent acts on, the way E2B's envd does:
/// <c>~</c> and <c>~/x</c> are the caller's home, a relative path is relative to the caller's home, an empty path is
/// the default working directory (or the home), and <c>.</c>/<c>..</c> are resolved lexically (as Go's filepath.Abs).
/// Paths are not confined: the agent serves the whole sandbox, as envd does.
/// </summary>
internal static class PathResolver
{
    /// <summary>PATH_MAX less the terminating NUL: the longest path the kernel accepts.</summary>
    public const int MaxPathBytes = 4095;

    public static string Resolve(string? path, AgentUser user, string? defaultWorkdir = null)
    {
        path ??= "";
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"invalid path '{Printable(path)}': it contains a NUL byte");
        }
        if (path.Length == 0)
        {
            path = string.IsNullOrEmpty(defaultWorkdir) ? user.Home : defaultWorkdir;
        }
        else if (path[0] == '~')
        {
            if (path.Length > 1 && path[1] != '/')
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"invalid path '{Printable(path)}': only '~' and '~/...' (the caller's home) can be expanded, not another user's home");
            }
            path = user.Home + "/" + path[1..];
        }
        if (path[0] != '/')
        {
            path = user.Home.TrimEnd('/') + "/" + path;
        }
        var clean = Clean(path);
        if (Encoding.UTF8.GetByteCount(clean) > MaxPathBytes)
        {
            throw new ConnectException(ConnectCode.InvalidArgument, $"invalid path '{Printable(clean[..64])}...': it is longer than {MaxPathBytes} bytes");
        }
        return clean;
    }

    /// <summary>Lexical clean-up of an absolute path: no empty, '.' or '..' segments, no trailing slash.</summary>
    internal static string Clean(string absolute)
    {
        var segments = new List<string>();
        foreach (var segment in absolute.Split('/'))
        {
            if (segment.Length == 0 || segment == ".")
            {
                continue;
            }
            if (segment == "..")
            {
                if (segments.Count > 0)
                {
                    segments.RemoveAt(segments.Count - 1);
                }
                continue;
            }
            segments.Add(segment);
        }
        return "/" + string.Join('/', segments);
    }

    /// <summary>The last segment of a clean absolute path; "/" for the root.</summary>
    public static string NameOf(string cleanPath) => cleanPath == "/" ? "/" : cleanPath[(cleanPath.LastIndexOf('/') + 1)..];

    /// <summary>The parent of a clean absolute path; "/" for the root and its children.</summary>
    public static string ParentOf(string cleanPath)
    {
        var slash = cleanPath.LastIndexOf('/');
        return slash <= 0 ? "/" : cleanPath[..slash];
    }

    /// <summary>Joins a clean absolute directory and a name.</summary>
    public static string Join(string directory, string name) => directory == "/" ? "/" + name : directory + "/" + name;

    /// <summary>A path made safe to quote in an error message: control characters shown as escapes.</summary>
    public static string Printable(string path)
    {
        var builder = new StringBuilder(path.Length);
        foreach (var c in path)
        {
            if (char.IsControl(c))
            {
                builder.Append(c == '\0' ? "\\0" : $"\\x{(int)c:x2}");
            }
            else
            {
                builder.Append(c);
            }
        }
        return builder.ToString();
    }
}
