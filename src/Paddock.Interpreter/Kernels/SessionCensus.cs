namespace Paddock.Interpreter.Kernels;

/// <summary>
/// Counts the processes of a kernel's session (each kernel is started with setsid, so its pid is the session id):
/// /proc/PID/stat's sixth field. Read only after a cell failed or was interrupted, so a cell that ends normally pays
/// nothing.
/// </summary>
internal static class SessionCensus
{
    /// <summary>
    /// More processes than this in one kernel's session after a failed or interrupted cell: a fork bomb (or a cell
    /// that started hundreds of children) — the kernel and its forks are killed and a new kernel started. The forks of
    /// a forked kernel are copies of it holding its ZeroMQ sockets, which would otherwise keep taking its messages.
    /// </summary>
    public const int Limit = 256;

    public static int Count(int sessionId)
    {
        var count = 0;
        Span<Range> parts = stackalloc Range[5];
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(dir.AsSpan());
            if (name.Length == 0 || !char.IsAsciiDigit(name[0]))
            {
                continue;
            }
            string stat;
            try
            {
                stat = File.ReadAllText(Path.Combine(dir, "stat"));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue; // exited meanwhile, or not ours to read
            }
            // "pid (comm) state ppid pgrp session ...": comm may hold spaces and parentheses; fields follow the last ')'.
            var close = stat.LastIndexOf(')');
            if (close < 0)
            {
                continue;
            }
            var fields = stat.AsSpan(close + 2);
            if (fields.Split(parts, ' ') >= 4 && int.TryParse(fields[parts[3]], out var session) && session == sessionId)
            {
                count++;
            }
        }
        return count;
    }
}
