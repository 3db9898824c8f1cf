using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Processes;

/// <summary>What to start: a resolved executable, its argv and environment, and how its stdio is wired.</summary>
internal sealed record SpawnRequest(
    string Path,
    IReadOnlyList<string> Argv,
    IReadOnlyList<string> Envp,
    string WorkingDirectory,
    AgentUser User,
    bool Stdin,
    (ushort Cols, ushort Rows)? Terminal);

/// <summary>A started child: its pid, its exit, and the agent's ends of its stdio (owned by the caller).</summary>
internal sealed class SpawnedProcess : IDisposable
{
    public required int Pid { get; init; }

    public required Task<ExitStatus> Exit { get; init; }

    /// <summary>The write end of a stdin pipe; null with a terminal or with stdin disabled.</summary>
    public Socket? Stdin { get; init; }

    /// <summary>The read end of the stdout pipe (read through <see cref="OutputPoller"/>); null with a terminal.</summary>
    public SafeFileHandle? Stdout { get; init; }

    public SafeFileHandle? Stderr { get; init; }

    /// <summary>The terminal's master: output (through <see cref="OutputPoller"/>) and input alike.</summary>
    public Socket? Terminal { get; init; }

    public void Dispose()
    {
        Stdin?.Dispose();
        Stdout?.Dispose();
        Stderr?.Dispose();
        Terminal?.Dispose();
    }
}

/// <summary>
/// Starts processes with posix_spawn. When the target identity (uid, gid, groups) is the agent's own, the target is
/// spawned directly; otherwise the spawning thread alone takes the user's identity for the length of the posix_spawn
/// (<see cref="Credentials.AssumeOnThisThread"/>), so the child starts as the user with no helper process. Either way
/// the child is a session leader (its pid is its process group id) with default signal handling.
/// </summary>
internal sealed class ProcessSpawner
{
    /// <summary>
    /// Pipe buffers are grown to this (from the 64 KiB default) so a fast writer fills fewer, larger reads;
    /// 1 MiB is the default /proc/sys/fs/pipe-max-size, so root and non-root agents alike get it.
    /// </summary>
    private const int PipeBytes = ManagedProcess.LargeRead;

    private const int O_RDONLY = 0;

    private readonly ChildReaper _reaper;
    private readonly SpawnThread _spawnThread;
    private readonly uint _agentUid = Identity.GetEffectiveUid();
    private readonly uint _agentGid = Identity.GetEffectiveGid();
    private readonly uint[] _agentGroupList = Credentials.GetGroups();
    private readonly HashSet<uint> _agentGroups;

    public ProcessSpawner(ChildReaper reaper)
    {
        _reaper = reaper;
        _agentGroups = [.. _agentGroupList, _agentGid];
        // Started here, before the agent answers /health, because the runc tier looks for the thread right after.
        _spawnThread = SpawnThread.Shared;
    }

    /// <summary>True when a process for <paramref name="user"/> can be spawned directly, without switching identity.</summary>
    public bool IsOwnIdentity(AgentUser user)
    {
        if (user.Uid != _agentUid || user.Gid != _agentGid)
        {
            return false;
        }
        // The user directory hands out the same AgentUser until /etc/passwd or /etc/group changes: remember the answer
        // for it rather than build a set on every Start.
        var last = _lastIdentity;
        if (ReferenceEquals(last?.User, user))
        {
            return last.Own;
        }
        var target = new HashSet<uint>(user.Groups) { user.Gid };
        var own = target.SetEquals(_agentGroups);
        _lastIdentity = new IdentityAnswer(user, own);
        return own;
    }

    private sealed record IdentityAnswer(AgentUser User, bool Own);

    private volatile IdentityAnswer? _lastIdentity;

    /// <summary>
    /// Starts the process. Throws <see cref="ConnectException"/> with a message for the caller when it cannot run
    /// (missing executable, permission, working directory), after cleaning up whatever was created.
    /// </summary>
    public Task<SpawnedProcess> SpawnAsync(SpawnRequest request, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(Spawn(request));
    }

    private SpawnedProcess Spawn(SpawnRequest request)
    {
        var direct = IsOwnIdentity(request.User);
        if (!direct && _agentUid != 0)
        {
            throw new ConnectException(ConnectCode.PermissionDenied,
                $"the agent runs as uid {_agentUid} and cannot start processes as user '{request.User.Name}' (uid {request.User.Uid})");
        }

        var parentEnds = new List<int>();
        var childEnds = new List<int>();
        int stdinW = -1, stdoutR = -1, stderrR = -1, master = -1;
        try
        {
            using var actions = new Native.Spawn.FileActions();
            if (request.Terminal is { } size)
            {
                master = Pty.OpenMaster(out var slavePath);
                parentEnds.Add(master);
                _ = Pty.SetSize(master, size.Cols, size.Rows);
                if (!direct)
                {
                    Pty.TryChown(slavePath, request.User.Uid);
                }
                // Opened after setsid and without O_NOCTTY: the terminal becomes the session's controlling tty.
                actions.Open(0, slavePath, Pty.O_RDWR);
                actions.Dup2(0, 1);
                actions.Dup2(0, 2);
            }
            else
            {
                if (request.Stdin)
                {
                    var (r, w) = Descriptors.CreatePipe();
                    childEnds.Add(r);
                    parentEnds.Add(stdinW = w);
                    actions.Dup2(r, 0);
                }
                else
                {
                    actions.Open(0, "/dev/null", O_RDONLY);
                }
                var (outR, outW) = Descriptors.CreatePipe();
                parentEnds.Add(stdoutR = outR);
                childEnds.Add(outW);
                Descriptors.TryGrowPipe(outW, PipeBytes);
                var (errR, errW) = Descriptors.CreatePipe();
                parentEnds.Add(stderrR = errR);
                childEnds.Add(errW);
                Descriptors.TryGrowPipe(errW, PipeBytes);
                actions.Dup2(outW, 1);
                actions.Dup2(errW, 2);
            }
            // The file actions run in the child with its final identity: a directory the user may not enter is
            // refused as it would be in the user's own shell.
            actions.ChangeDirectory(request.WorkingDirectory);

            // On the agent's one spawn thread: the runc tier puts that thread into the sandbox's work cgroup, so the
            // child starts there and not in the agent's pid reserve (see SpawnThread); a start as another user switches
            // that thread's credentials around the spawn, so only that thread is ever anyone but root.
            var (pid, exit) = _reaper.Spawn(() => _spawnThread.Run(() => direct ? StartDirect(request, actions) : StartAsUser(request, actions)));
            foreach (var fd in childEnds)
            {
                Descriptors.Close(fd);
            }
            childEnds.Clear();

            var spawned = new SpawnedProcess
            {
                Pid = pid,
                Exit = exit,
                Stdin = stdinW >= 0 ? Descriptors.AsSocket(stdinW) : null,
                Stdout = stdoutR >= 0 ? Descriptors.Own(stdoutR) : null,
                Stderr = stderrR >= 0 ? Descriptors.Own(stderrR) : null,
                Terminal = master >= 0 ? Descriptors.AsSocket(master) : null,
            };
            parentEnds.Remove(stdinW);
            parentEnds.Remove(stdoutR);
            parentEnds.Remove(stderrR);
            parentEnds.Remove(master);
            return spawned;
        }
        finally
        {
            foreach (var fd in childEnds.Concat(parentEnds))
            {
                Descriptors.Close(fd);
            }
        }
    }

    private static int StartDirect(SpawnRequest request, Native.Spawn.FileActions actions)
    {
        var rc = Native.Spawn.Start(request.Path, request.Argv, request.Envp, actions, out var child);
        return rc == 0 ? child : throw new ConnectException(ConnectCode.InvalidArgument, ExecFailure(request.Path, rc));
    }

    /// <summary>
    /// posix_spawn as <see cref="SpawnRequest.User"/>: this thread takes the user's groups, gid and uid, spawns, and
    /// returns to root, all synchronously (an await could move the rest to another thread, or run other work on this
    /// one while it is the user). The strings are marshalled by <see cref="Native.Spawn.Start"/> in between, which
    /// only allocates.
    /// </summary>
    /// <remarks>
    /// Known hole: while this thread is the user (the vfork of posix_spawn, about a millisecond), kill(2) by any
    /// process of that user succeeds against this thread's id, and a signal sent to a thread id goes to the whole
    /// agent. Measured on the host (2026-11-28, /tmp script: `nobody` looping `kill -TERM` over /proc/AGENT/task/*
    /// while the agent started `true` as nobody): SIGTERM reached the agent within 7 starts and it shut down; the
    /// old exec helper took 0 hits in 62 starts. As PID 1 of a sandbox only handled signals arrive (SIGTERM, SIGINT,
    /// SIGQUIT: shutdown). The fix is for the shutdown handling to honour only signals from outside the sandbox's
    /// pid namespace (si_pid 0), or for a separate long-lived spawner process to do this switch.
    /// </remarks>
    private int StartAsUser(SpawnRequest request, Native.Spawn.FileActions actions)
    {
        var user = request.User;
        // The primary group first, as login(1) and initgroups(3) put it.
        Span<uint> groups = stackalloc uint[user.Groups.Count + 1];
        groups[0] = user.Gid;
        var count = 1;
        foreach (var g in user.Groups)
        {
            if (g != user.Gid)
            {
                groups[count++] = g;
            }
        }
        int rc, child, cwd = 0;
        IdentitySwitches.Open();
        var switched = Credentials.AssumeOnThisThread(user.Uid, user.Gid, groups[..count], _agentGroupList);
        if (switched != 0)
        {
            IdentitySwitches.Close(); // AssumeOnThisThread restored root itself
            throw new ConnectException(ConnectCode.PermissionDenied,
                $"cannot switch to user '{user.Name}' (uid {user.Uid}, gid {user.Gid}): {Errno.Message(switched)}");
        }
        try
        {
            rc = Native.Spawn.Start(request.Path, request.Argv, request.Envp, actions, out child);
            if (rc != 0)
            {
                // posix_spawn returns one errno for whichever step failed, the chdir or the exec: ask, as the user,
                // whether the directory was the reason, to give the same message a shell would.
                cwd = Credentials.CanEnter(request.WorkingDirectory);
            }
        }
        finally
        {
            Credentials.RestoreRootOnThisThread(_agentGroupList);
            IdentitySwitches.Close();
        }
        if (rc == 0)
        {
            return child;
        }
        throw new ConnectException(ConnectCode.InvalidArgument, cwd != 0
            ? $"cannot use cwd '{request.WorkingDirectory}' as user '{user.Name}': {Errno.Message(cwd)}"
            : ExecFailure(request.Path, rc));
    }

    /// <summary>The caller's message for an exec that failed with <paramref name="errno"/>.</summary>
    internal static string ExecFailure(string path, int errno) => errno switch
    {
        Errno.ENOENT => $"cannot execute '{path}': no such file, or its interpreter is missing",
        Errno.EACCES => $"cannot execute '{path}': permission denied",
        Errno.ENOEXEC => $"cannot execute '{path}': not an executable format",
        Errno.E2BIG => $"cannot execute '{path}': the arguments and environment are too large",
        _ => $"cannot execute '{path}': {Errno.Message(errno)}",
    };
}
