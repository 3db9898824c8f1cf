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
/// spawned directly; otherwise through the agent's own binary in <see cref="ExecHelper"/> mode. Either way the child
/// is a session leader (its pid is its process group id) with default signal handling.
/// </summary>
internal sealed class ProcessSpawner
{
    /// <summary>
    /// Pipe buffers are grown to this (from the 64 KiB default) so a fast writer fills fewer, larger reads;
    /// 1 MiB is the default /proc/sys/fs/pipe-max-size, so root and non-root agents alike get it.
    /// </summary>
    private const int PipeBytes = ManagedProcess.LargeRead;

    private const int O_RDONLY = 0;

    // The helper must answer within this; a JIT-started helper needs a few hundred milliseconds on a busy machine.
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromSeconds(30);

    private readonly ChildReaper _reaper;
    private readonly SpawnThread _spawnThread;
    private readonly IReadOnlyList<string> _selfExec;
    private readonly uint _agentUid = Identity.GetEffectiveUid();
    private readonly uint _agentGid = Identity.GetEffectiveGid();
    private readonly HashSet<uint> _agentGroups = [.. Credentials.GetGroups(), Identity.GetEffectiveGid()];

    public ProcessSpawner(ChildReaper reaper)
    {
        _reaper = reaper;
        _selfExec = SelfExecCommand();
        // Started here, before the agent answers /health, because the runc tier looks for the thread right after.
        _spawnThread = SpawnThread.Shared;
    }

    /// <summary>
    /// The command that starts this agent's own binary: PADDOCK_AGENT_SELF_EXEC (space separated) when set, which a
    /// container start sets because the agent runs there through a bundled dynamic loader; else the running binary,
    /// or `dotnet paddock-agent.dll` for a JIT build started through the muxer.
    /// </summary>
    internal static IReadOnlyList<string> SelfExecCommand()
    {
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_SELF_EXEC") is { Length: > 0 } configured)
        {
            return configured.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        }
        var self = Environment.ProcessPath ?? throw new InvalidOperationException("the agent cannot find its own binary");
        return Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [self, Path.Combine(AppContext.BaseDirectory, "paddock-agent.dll")]
            : [self];
    }

    /// <summary>True when a process for <paramref name="user"/> can be spawned directly, without the exec helper.</summary>
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
    public async Task<SpawnedProcess> SpawnAsync(SpawnRequest request, CancellationToken cancellationToken)
    {
        var direct = IsOwnIdentity(request.User);
        if (!direct && _agentUid != 0)
        {
            throw new ConnectException(ConnectCode.PermissionDenied,
                $"the agent runs as uid {_agentUid} and cannot start processes as user '{request.User.Name}' (uid {request.User.Uid})");
        }

        var parentEnds = new List<int>();
        var childEnds = new List<int>();
        int stdinW = -1, stdoutR = -1, stderrR = -1, master = -1, channel = -1;
        try
        {
            using var actions = new Spawn.FileActions();
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

            string path;
            IReadOnlyList<string> argv;
            IReadOnlyList<string> envp;
            if (direct)
            {
                actions.ChangeDirectory(request.WorkingDirectory);
                (path, argv, envp) = (request.Path, request.Argv, request.Envp);
            }
            else
            {
                var (mine, helpers) = Descriptors.CreateSocketPair();
                parentEnds.Add(channel = mine);
                childEnds.Add(helpers);
                actions.Dup2(helpers, ExecHelper.ChannelFd);
                path = _selfExec[0];
                argv = [.. _selfExec, ExecHelper.Verb];
                envp = HelperEnvironment();
            }

            var (pid, exit) = _reaper.Spawn(() =>
            {
                // On the agent's one spawn thread: the runc tier puts that thread into the sandbox's work cgroup, so the
                // child starts there and not in the agent's pid reserve (see SpawnThread).
                var rc = _spawnThread.Start(path, argv, envp, actions, out var child);
                return rc == 0 ? child : throw new ConnectException(ConnectCode.InvalidArgument, direct
                    ? ExecFailure(request.Path, rc)
                    : $"cannot start the exec helper '{path}': {Errno.Message(rc)}");
            });
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

            if (!direct)
            {
                parentEnds.Remove(channel);
                using var helper = Descriptors.AsSocket(channel);
                var failure = await HandshakeAsync(helper, request, pid, cancellationToken);
                if (failure is not null)
                {
                    spawned.Dispose();
                    // The helper exits at once after reporting; wait so the caller never sees its pid listed.
                    await exit.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ContinueWith(_ => { }, TaskScheduler.Default);
                    throw failure;
                }
            }
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

    private static async Task<ConnectException?> HandshakeAsync(Socket helper, SpawnRequest request, int pid, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(HelperTimeout);
        var exec = new ExecRequest(request.User.Name, request.User.Uid, request.User.Gid, [request.User.Gid, .. request.User.Groups.Where(g => g != request.User.Gid)],
            request.WorkingDirectory, request.Path, request.Argv, request.Envp);
        try
        {
            await helper.SendAsync(exec.Serialize(), SocketFlags.None, timeout.Token);
            var reply = new byte[16 * 1024];
            var length = 0;
            while (length < reply.Length)
            {
                var n = await helper.ReceiveAsync(reply.AsMemory(length), SocketFlags.None, timeout.Token);
                if (n == 0)
                {
                    break;
                }
                length += n;
            }
            return ExecHelper.ParseFailure(reply.AsSpan(0, length));
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException)
        {
            // A helper that hangs or dies without a word: it must not linger as the caller's process.
            _ = Signals.Send(pid, Signals.SIGKILL);
            return ex is OperationCanceledException && cancellationToken.IsCancellationRequested
                ? new ConnectException(ConnectCode.Canceled, "the call ended while the process was starting")
                : new ConnectException(ConnectCode.Internal, $"the exec helper (pid {pid}) did not start the process: {ex.Message}");
        }
    }

    /// <summary>The helper's own environment: only what the agent's binary needs to start; the target's travels in the request.</summary>
    private static List<string> HelperEnvironment()
    {
        var env = new List<string>();
        foreach (System.Collections.DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            var key = (string)e.Key;
            if (key is "PATH" or "DOTNET_ROOT" || key.StartsWith("DOTNET_", StringComparison.Ordinal))
            {
                env.Add(key + "=" + (string?)e.Value);
            }
        }
        return env;
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
