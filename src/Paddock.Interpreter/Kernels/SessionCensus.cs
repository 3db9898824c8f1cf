using Paddock.Interpreter.Native;

namespace Paddock.Interpreter.Kernels;

/// <summary>
/// What one census found in a session: its processes (zombies included) and their threads. <see cref="Partial"/>: the
/// census stopped once it had found more than it was asked to look for, so the session holds at least this many.
/// </summary>
internal readonly record struct SessionCount(int Processes, int Tasks, bool Partial = false);

/// <summary>
/// Counts and kills the processes of a kernel's session. Each kernel is started with setsid, so its pid is the
/// session id, and what its cells fork stays in that session (and in its process group) even after the forking
/// process died and the child was re-parented to the agent, the sandbox's reaper: /proc/PID/stat's sixth field
/// says so. A process that calls setsid itself leaves the session and is out of reach here.
/// </summary>
internal static class SessionCensus
{
    /// <summary>A process of the session: its pid and whether it is a zombie (dead, holding its pid until reaped).</summary>
    private readonly record struct Member(int Pid, int ProcessGroup, bool Zombie, int Threads);

    /// <summary>
    /// Counts the session's processes and threads; stops (a <see cref="SessionCount.Partial"/> count) as soon as
    /// more than <paramref name="stopPastProcesses"/> processes or <paramref name="stopPastTasks"/> threads were
    /// found. The watchdog asks for no more than its limit because a census's cost grows with what it reads: inside
    /// gVisor each /proc/PID/stat read contends with a fork bomb's forks in the Sentry, and a full census of a bash
    /// bomb's 118-250 processes came seconds late or never (measured 2026-12-07, SECURITY.md).
    /// </summary>
    public static SessionCount Count(int sessionId, int stopPastProcesses = int.MaxValue, int stopPastTasks = int.MaxValue)
    {
        var processes = 0;
        var tasks = 0;
        foreach (var member in Members(sessionId))
        {
            processes++;
            tasks += Math.Max(member.Threads, 1);
            if (processes > stopPastProcesses || tasks > stopPastTasks)
            {
                return new SessionCount(processes, tasks, Partial: true);
            }
        }
        return new SessionCount(processes, tasks);
    }

    /// <summary>
    /// SIGKILLs every process of the session until none is alive (zombies stay until their new parent reaps them):
    /// first the kernel's process group in one call (the kernel signals a group's members under one lock, so a fork
    /// bomb that never left the group cannot outrun it), then, pass after pass, each other group of a live member
    /// (the bash and Node.js children of the wrapper kernels have their own; bash job control makes more) and each
    /// live member. A killed process cannot fork, so the passes end; bounded at 50 passes 10 ms apart.
    /// Returns the processes still alive after the last pass (0 when all died).
    /// </summary>
    public static async Task<int> KillAllAsync(int sessionId, CancellationToken cancellationToken)
    {
        Libc.kill(-sessionId, Libc.SIGKILL);
        var alive = 0;
        for (var pass = 0; pass < 50; pass++)
        {
            alive = 0;
            foreach (var member in Members(sessionId))
            {
                if (!member.Zombie)
                {
                    alive++;
                    if (member.ProcessGroup > 1)
                    {
                        Libc.kill(-member.ProcessGroup, Libc.SIGKILL);
                    }
                    Libc.kill(member.Pid, Libc.SIGKILL);
                }
            }
            if (alive == 0)
            {
                return 0;
            }
            await Task.Delay(10, cancellationToken);
        }
        return alive;
    }

    /// <summary>
    /// The tasks (threads included) of every process whose real uid is this server's, as RLIMIT_NPROC counts them
    /// (kernels run as the server's user).
    /// </summary>
    public static int UserTasks()
    {
        var self = StatusFields(File.ReadAllText("/proc/self/status")).Uid;
        var tasks = 0;
        foreach (var (_, status) in ProcessFiles("status"))
        {
            var (uid, threads) = StatusFields(status);
            if (uid == self && uid >= 0)
            {
                tasks += Math.Max(threads, 1);
            }
        }
        return tasks;
    }

    /// <summary>"Uid:\t1000\t1000\t1000\t1000" (real uid first) and "Threads:\t4" of /proc/PID/status; -1 when missing.</summary>
    private static (int Uid, int Threads) StatusFields(string status)
    {
        var uid = -1;
        var threads = -1;
        foreach (var line in status.AsSpan().EnumerateLines())
        {
            if (line.StartsWith("Uid:"))
            {
                var rest = line["Uid:".Length..].TrimStart();
                var end = rest.IndexOfAny(' ', '\t');
                _ = int.TryParse(end < 0 ? rest : rest[..end], out uid);
            }
            else if (line.StartsWith("Threads:"))
            {
                _ = int.TryParse(line["Threads:".Length..].Trim(), out threads);
            }
        }
        return (uid, threads);
    }

    private static IEnumerable<Member> Members(int sessionId)
    {
        foreach (var (pid, stat) in ProcessFiles("stat"))
        {
            if (Parse(stat, sessionId) is { } member)
            {
                yield return member with { Pid = pid };
            }
        }
    }

    /// <summary>Each process's /proc/PID/<paramref name="file"/>, read whole; processes that exit meanwhile, or are not ours to read, are left out.</summary>
    private static IEnumerable<(int Pid, string Text)> ProcessFiles(string file)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            var name = Path.GetFileName(dir.AsSpan());
            if (name.Length == 0 || !char.IsAsciiDigit(name[0]) || !int.TryParse(name, out var pid))
            {
                continue;
            }
            string text;
            try
            {
                text = File.ReadAllText(Path.Combine(dir, file));
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                continue; // exited meanwhile, or not ours to read
            }
            yield return (pid, text);
        }
    }

    /// <summary>
    /// "pid (comm) state ppid pgrp session ... num_threads(20th) ...": comm may hold spaces and parentheses, so the
    /// fields are counted from the last ')'. Null when the process is not of <paramref name="sessionId"/>.
    /// </summary>
    private static Member? Parse(string stat, int sessionId)
    {
        var close = stat.LastIndexOf(')');
        if (close < 0 || close + 2 >= stat.Length)
        {
            return null;
        }
        var fields = stat.AsSpan(close + 2);
        Span<Range> parts = stackalloc Range[19];
        // Fields from the third (state): the process group is the 3rd of them, the session the 4th, num_threads the 18th.
        if (fields.Split(parts, ' ') < 18 || !int.TryParse(fields[parts[3]], out var session) || session != sessionId)
        {
            return null;
        }
        var state = fields[parts[0]];
        var zombie = state.Length == 1 && (state[0] == 'Z' || state[0] == 'X');
        _ = int.TryParse(fields[parts[2]], out var group);
        _ = int.TryParse(fields[parts[17]], out var threads);
        return new Member(0, group, zombie, threads);
    }
}
