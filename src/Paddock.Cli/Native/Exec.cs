using System.Runtime.InteropServices;

namespace Paddock.Cli.Native;

/// <summary>execvp(3): replaces this process with another program (for `paddock up`).</summary>
internal static partial class Exec
{
    /// <summary>
    /// Replaces the process; returns only on failure, with errno (ENOENT: not found, EACCES: not executable,
    /// ENOEXEC: not a binary or script). Runs no managed code in a child: there is no child.
    /// </summary>
    public static int Replace(string file, IReadOnlyList<string> argv)
    {
        var args = new string?[argv.Count + 1];
        for (var i = 0; i < argv.Count; i++)
        {
            args[i] = argv[i];
        }
        _ = execvp(file, args);
        return Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int execvp(string file, string?[] argv);
}
