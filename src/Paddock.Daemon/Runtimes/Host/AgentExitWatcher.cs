using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Notices at once when a sandbox's agent (its container's init) exits on its own: a crash, an OOM kill, a SIGKILL
/// from outside. The container is then gone, and without this the sandbox would stay listed as running until the
/// daemon's periodic lost-sandbox sweep (DaemonOptions.HousekeepingPeriod) or its deadline.
/// </summary>
/// <remarks>
/// One thread for all sandboxes: a pidfd (pidfd_open) per agent, all in one poll(2) with an eventfd that wakes it
/// when the set changes. A pidfd becomes readable when its process exits, and it names that process alone, so a
/// recycled pid can never be mistaken for the agent. Only this thread closes the pidfds it polls (a descriptor closed
/// under a running poll could be reused for another file meanwhile); <see cref="Forget"/> hands the removal to it.
/// The callback runs on the thread pool, never on the watcher thread.
/// </remarks>
internal sealed partial class AgentExitWatcher : IDisposable
{
    private readonly object _gate = new();
    private readonly Dictionary<string, int> _pidfds = new(StringComparer.Ordinal);
    private readonly List<int> _toClose = [];
    private readonly int _wake;
    private readonly Func<string, Task> _onExit;
    private readonly ILogger _logger;
    private readonly Thread _thread;
    private volatile bool _stopping;

    public AgentExitWatcher(Func<string, Task> onExit, ILogger logger)
    {
        _onExit = onExit;
        _logger = logger;
        _wake = ProcessDescriptors.CreateEventFd();
        _thread = new Thread(Loop) { IsBackground = true, Name = "agent-exit-watch" };
        _thread.Start();
    }

    /// <summary>Sandboxes watched now (for tests).</summary>
    public int Count
    {
        get
        {
            lock (_gate)
            {
                return _pidfds.Count;
            }
        }
    }

    /// <summary>
    /// Watches the agent <paramref name="agentPid"/> of <paramref name="sandboxId"/> (again: a second call for the same
    /// sandbox replaces the first). When the agent is already gone the callback runs at once.
    /// </summary>
    public void Watch(string sandboxId, int agentPid)
    {
        var fd = ProcessDescriptors.OpenPidfd(agentPid, out var errno);
        if (fd < 0)
        {
            if (errno == Errno.ESRCH)
            {
                Exited(sandboxId, agentPid);
            }
            else
            {
                CannotWatch(_logger, sandboxId, agentPid, Errno.Describe(errno));
            }
            return;
        }
        lock (_gate)
        {
            if (_pidfds.Remove(sandboxId, out var old))
            {
                _toClose.Add(old);
            }
            _pidfds[sandboxId] = fd;
        }
        ProcessDescriptors.Signal(_wake);
    }

    /// <summary>
    /// <see cref="Watch"/> unless <paramref name="sandboxId"/> is watched already (a listing repeats every sweep). A
    /// destroy racing this can leave a watch on a sandbox being destroyed; its callback then finds no running sandbox.
    /// </summary>
    public void WatchIfNew(string sandboxId, int agentPid)
    {
        lock (_gate)
        {
            if (_pidfds.ContainsKey(sandboxId))
            {
                return;
            }
        }
        Watch(sandboxId, agentPid);
    }

    /// <summary>Stops watching <paramref name="sandboxId"/>; call before the daemon itself ends the agent.</summary>
    public void Forget(string sandboxId)
    {
        lock (_gate)
        {
            if (!_pidfds.Remove(sandboxId, out var fd))
            {
                return;
            }
            _toClose.Add(fd);
        }
        ProcessDescriptors.Signal(_wake);
    }

    private void Loop()
    {
        var polled = new List<(string Id, int Fd)>();
        var fds = new ProcessDescriptors.PollFd[1];
        while (!_stopping)
        {
            polled.Clear();
            lock (_gate)
            {
                foreach (var fd in _toClose)
                {
                    ProcessDescriptors.Close(fd);
                }
                _toClose.Clear();
                foreach (var (id, fd) in _pidfds)
                {
                    polled.Add((id, fd));
                }
            }
            if (fds.Length < polled.Count + 1)
            {
                fds = new ProcessDescriptors.PollFd[Math.Max(polled.Count + 1, fds.Length * 2)];
            }
            fds[0] = new ProcessDescriptors.PollFd { Fd = _wake, Events = ProcessDescriptors.POLLIN };
            for (var i = 0; i < polled.Count; i++)
            {
                fds[i + 1] = new ProcessDescriptors.PollFd { Fd = polled[i].Fd, Events = ProcessDescriptors.POLLIN };
            }
            var ready = ProcessDescriptors.Poll(fds.AsSpan(0, polled.Count + 1), out var errno);
            if (ready < 0)
            {
                if (errno != Errno.EINTR)
                {
                    // Not expected (the descriptors are valid and owned here); back off rather than spin.
                    PollFailed(_logger, Errno.Describe(errno));
                    Thread.Sleep(1000);
                }
                continue;
            }
            if ((fds[0].Revents & ProcessDescriptors.POLLIN) != 0)
            {
                ProcessDescriptors.Drain(_wake);
            }
            for (var i = 0; i < polled.Count; i++)
            {
                if (fds[i + 1].Revents == 0)
                {
                    continue;
                }
                var (id, fd) = polled[i];
                bool mine;
                lock (_gate)
                {
                    // Still the same watch (not forgotten or replaced while we polled): this thread ends it.
                    mine = _pidfds.TryGetValue(id, out var current) && current == fd && _pidfds.Remove(id);
                    if (mine)
                    {
                        _toClose.Add(fd);
                    }
                }
                if (mine)
                {
                    Exited(id, agentPid: null);
                }
            }
        }
    }

    private void Exited(string sandboxId, int? agentPid)
    {
        AgentExited(_logger, sandboxId, agentPid ?? 0);
        _ = Task.Run(async () =>
        {
            try
            {
                await _onExit(sandboxId);
            }
            catch (Exception ex)
            {
                CallbackFailed(_logger, sandboxId, ex);
            }
        });
    }

    public void Dispose()
    {
        _stopping = true;
        ProcessDescriptors.Signal(_wake);
        if (_thread.Join(TimeSpan.FromSeconds(5)))
        {
            lock (_gate)
            {
                foreach (var fd in _pidfds.Values.Concat(_toClose))
                {
                    ProcessDescriptors.Close(fd);
                }
                _pidfds.Clear();
                _toClose.Clear();
            }
            ProcessDescriptors.Close(_wake);
        }
    }

    [LoggerMessage(3061, LogLevel.Warning, "Sandbox {SandboxId}: its agent exited on its own (pid {AgentPid}, 0 when unknown); the sandbox is lost")]
    private static partial void AgentExited(ILogger logger, string sandboxId, int agentPid);

    [LoggerMessage(3062, LogLevel.Warning, "Sandbox {SandboxId}: cannot watch its agent (pid {AgentPid}): {Error}; the periodic lost-sandbox sweep still finds it")]
    private static partial void CannotWatch(ILogger logger, string sandboxId, int agentPid, string error);

    [LoggerMessage(3063, LogLevel.Error, "The agent exit watcher's poll failed: {Error}")]
    private static partial void PollFailed(ILogger logger, string error);

    [LoggerMessage(3064, LogLevel.Error, "Sandbox {SandboxId}: handling its agent's exit failed")]
    private static partial void CallbackFailed(ILogger logger, string sandboxId, Exception exception);
}
