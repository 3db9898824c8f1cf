using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// The agent's standard output and error as a named pipe in the sandbox's directory, which the daemon drains into
/// the sandbox's <c>agent.log</c> with a byte bound. For a tier whose sandbox can reach the host descriptor it was
/// given as stdio: runsc hands the container its own stdio, and root in a gVisor sandbox could append to a host file
/// given there through <c>/proc/1/fd/1</c> without end (found by tests/security, issue 14: a way to fill the host's
/// disk). A pipe is no file to fill: what reaches the host's disk is only what this drain writes.
/// </summary>
/// <remarks>
/// <para>The bound: <c>agent.log</c> holds at most <see cref="BoundBytes"/> bytes; when the next byte would pass it,
/// the file becomes <c>agent.log.1</c> (replacing an older one) and a new <c>agent.log</c> starts with a line that
/// says so. So the host keeps the newest output, at most twice the bound, and drops what came before that.</para>
/// <para>A daemon restart: the drain opens the FIFO for reading and writing, non-blocking, so a writer's open never
/// waits and the drain never sees end-of-file. While no daemon holds it, the pipe has no reader and a write into it
/// fails with EPIPE (measured: it neither blocks nor succeeds): the agent, a .NET program, ignores SIGPIPE and drops
/// console output on EPIPE, and the Sentry keeps running. The pipe itself lives as long as a writer holds it, so a
/// restarted daemon that opens the same FIFO again gets the same pipe (and whatever was still buffered in it), and
/// writes succeed again (measured with a FIFO whose reader closed and reopened: EPIPE, then the next write read back).</para>
/// <para>One thread for all sandboxes, one poll(2) over every FIFO and an eventfd that wakes it when the set changes;
/// as in <see cref="AgentExitWatcher"/>, only that thread closes descriptors it polls.</para>
/// </remarks>
internal sealed partial class AgentLogDrain : IDisposable
{
    /// <summary>The FIFO's name in the sandbox's directory.</summary>
    public const string FifoName = "agent.fifo";

    /// <summary>The smallest bound: the rotation's own line must fit many times over.</summary>
    public const long MinimumBoundBytes = 4096;

    // What one poll round reads from one pipe before it serves the others: a busy sandbox cannot starve the rest.
    private const int RoundBytes = 1 << 20;

    // What a synchronous flush reads at most: a sandbox writing without pause cannot keep a caller in it forever.
    private const int FlushBytes = 16 << 20;

    private readonly object _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly List<int> _toClose = [];
    private readonly int _wake;
    private readonly ILogger _logger;
    private readonly Thread _thread;
    private volatile bool _stopping;

    public AgentLogDrain(long boundBytes, ILogger logger)
    {
        if (boundBytes < MinimumBoundBytes)
        {
            throw new ArgumentOutOfRangeException(nameof(boundBytes), boundBytes, $"the agent log bound must be at least {MinimumBoundBytes} bytes");
        }
        BoundBytes = boundBytes;
        _logger = logger;
        _wake = ProcessDescriptors.CreateEventFd();
        _thread = new Thread(Loop) { IsBackground = true, Name = "agent-log-drain" };
        // UnsafeStart: the thread must not carry the logging scope of the request that created the tier.
        _thread.UnsafeStart();
    }

    public long BoundBytes { get; }

    /// <summary>The FIFO of the sandbox in <paramref name="layout"/>.</summary>
    public static string FifoPath(SandboxLayout layout) => Path.Combine(layout.Directory, FifoName);

    /// <summary>The older half of the log, made at the bound.</summary>
    public static string RotatedLogPath(SandboxLayout layout) => layout.LogFile + ".1";

    /// <summary>
    /// Makes the sandbox's FIFO (or keeps the one there) and drains it from now on, appending to its agent.log; returns
    /// the FIFO's path, which the tier gives the agent as stdout and stderr. Again for a drained sandbox: nothing new.
    /// </summary>
    public string Open(SandboxLayout layout)
    {
        var fifo = FifoPath(layout);
        lock (_gate)
        {
            if (_entries.ContainsKey(layout.SandboxId))
            {
                return fifo;
            }
        }
        Fifos.Ensure(fifo);
        var fd = Fifos.OpenReader(fifo, out var errno);
        if (fd < 0)
        {
            throw Errno.Exception("open", fifo, errno);
        }
        SafeFileHandle file;
        try
        {
            file = File.OpenHandle(layout.LogFile, FileMode.OpenOrCreate, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        }
        catch
        {
            Fifos.Close(fd);
            throw;
        }
        var entry = new Entry(layout.SandboxId, fd, layout.LogFile, RotatedLogPath(layout), file, RandomAccess.GetLength(file));
        lock (_gate)
        {
            if (_entries.TryAdd(layout.SandboxId, entry))
            {
                ProcessDescriptors.Signal(_wake);
                return fifo;
            }
        }
        // Another caller opened it meanwhile; theirs drains it.
        entry.File.Dispose();
        Fifos.Close(fd);
        return fifo;
    }

    /// <summary>
    /// <see cref="Open"/> for a running sandbox found by a listing (a restarted daemon's), when its FIFO exists and it
    /// is not drained yet; a failure is logged, not thrown: the sandbox runs on, its output fails with EPIPE.
    /// </summary>
    public void Adopt(SandboxLayout layout)
    {
        if (IsOpen(layout.SandboxId) || !File.Exists(FifoPath(layout)))
        {
            return;
        }
        try
        {
            Open(layout);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            AdoptFailed(_logger, layout.SandboxId, ex);
        }
    }

    /// <summary>Sandboxes drained now (for tests).</summary>
    public bool IsOpen(string sandboxId)
    {
        lock (_gate)
        {
            return _entries.ContainsKey(sandboxId);
        }
    }

    /// <summary>Writes what the pipe holds now to agent.log, so that a log tail read next includes it (a failed start's reason).</summary>
    public void Flush(string sandboxId)
    {
        Entry? entry;
        lock (_gate)
        {
            _entries.TryGetValue(sandboxId, out entry);
        }
        if (entry is not null)
        {
            Drain(entry, FlushBytes);
        }
    }

    /// <summary>
    /// Stops draining the sandbox (a destroy, a pause) after writing what the pipe holds; the FIFO stays until its
    /// directory goes. Nothing happens for a sandbox not drained.
    /// </summary>
    public void Close(string sandboxId)
    {
        Entry? entry;
        lock (_gate)
        {
            _entries.Remove(sandboxId, out entry);
        }
        if (entry is null)
        {
            return;
        }
        Drain(entry, FlushBytes);
        lock (entry)
        {
            entry.Closed = true;
            entry.File.Dispose();
        }
        lock (_gate)
        {
            _toClose.Add(entry.Fd);
        }
        ProcessDescriptors.Signal(_wake);
    }

    private void Loop()
    {
        var polled = new List<Entry>();
        var fds = new ProcessDescriptors.PollFd[1];
        while (!_stopping)
        {
            polled.Clear();
            lock (_gate)
            {
                foreach (var fd in _toClose)
                {
                    Fifos.Close(fd);
                }
                _toClose.Clear();
                polled.AddRange(_entries.Values);
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
                if (fds[i + 1].Revents != 0)
                {
                    Drain(polled[i], RoundBytes);
                }
            }
        }
    }

    /// <summary>Reads up to <paramref name="maxBytes"/> of what the pipe holds and appends it within the bound.</summary>
    private void Drain(Entry entry, int maxBytes)
    {
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(64 * 1024);
        try
        {
            lock (entry)
            {
                DrainLocked(entry, buffer, maxBytes);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void DrainLocked(Entry entry, byte[] buffer, int maxBytes)
    {
        {
            var total = 0;
            while (!entry.Closed && total < maxBytes)
            {
                var n = Fifos.Read(entry.Fd, buffer, out var errno);
                if (n <= 0)
                {
                    if (n < 0 && errno == Errno.EINTR)
                    {
                        continue;
                    }
                    if (n < 0 && errno != Fifos.EAGAIN)
                    {
                        ReadFailed(_logger, entry.SandboxId, Errno.Describe(errno));
                    }
                    return;
                }
                total += n;
                Append(entry, buffer.AsSpan(0, n));
            }
        }
    }

    private void Append(Entry entry, ReadOnlySpan<byte> data)
    {
        try
        {
            while (data.Length > 0)
            {
                var room = BoundBytes - entry.Size;
                if (room <= 0)
                {
                    Rotate(entry);
                    continue;
                }
                var part = data[..(int)Math.Min(room, data.Length)];
                RandomAccess.Write(entry.File, part, entry.Size);
                entry.Size += part.Length;
                data = data[part.Length..];
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ObjectDisposedException)
        {
            // The host's state disk is full, or the file is gone: the output is dropped, the pipe still drained (a
            // pipe left full would block the agent's next log line).
            if (!entry.WriteFailed)
            {
                entry.WriteFailed = true;
                WriteFailed(_logger, entry.SandboxId, ex);
            }
        }
    }

    /// <summary>
    /// Moves the full log to agent.log.1 and starts a new agent.log with a line that says so. The new file is made
    /// aside and swapped in with one renameat2 exchange, so a reader of agent.log (a test, a <c>LogTail</c> after a
    /// failed start) always finds one; only where the filesystem cannot exchange does the old move-then-create run.
    /// </summary>
    private void Rotate(Entry entry)
    {
        var next = entry.LogPath + ".next";
        var file = File.OpenHandle(next, FileMode.Create, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        var line = System.Text.Encoding.UTF8.GetBytes(
            $"[paddock] {DateTimeOffset.UtcNow:O}: agent.log reached its bound of {BoundBytes} bytes; the output before this line is in agent.log.1, older output was dropped\n");
        RandomAccess.Write(file, line, 0);
        entry.File.Dispose();
        if (Files.TryExchange(next, entry.LogPath) == 0)
        {
            File.Move(next, entry.RotatedPath, overwrite: true);
        }
        else
        {
            File.Move(entry.LogPath, entry.RotatedPath, overwrite: true);
            File.Move(next, entry.LogPath);
        }
        entry.File = file;
        entry.Size = line.Length;
        if (!entry.Rotated)
        {
            entry.Rotated = true;
            Rotated(_logger, entry.SandboxId, BoundBytes);
        }
    }

    public void Dispose()
    {
        _stopping = true;
        ProcessDescriptors.Signal(_wake);
        if (!_thread.Join(TimeSpan.FromSeconds(5)))
        {
            return;
        }
        // Nothing more is read: what the pipes hold stays buffered there for the next daemon.
        lock (_gate)
        {
            foreach (var entry in _entries.Values)
            {
                lock (entry)
                {
                    entry.Closed = true;
                    entry.File.Dispose();
                }
                Fifos.Close(entry.Fd);
            }
            foreach (var fd in _toClose)
            {
                Fifos.Close(fd);
            }
            _entries.Clear();
            _toClose.Clear();
        }
        ProcessDescriptors.Close(_wake);
    }

    private sealed class Entry(string sandboxId, int fd, string logPath, string rotatedPath, SafeFileHandle file, long size)
    {
        public string SandboxId { get; } = sandboxId;

        public int Fd { get; } = fd;

        public string LogPath { get; } = logPath;

        public string RotatedPath { get; } = rotatedPath;

        public SafeFileHandle File { get; set; } = file;

        public long Size { get; set; } = size;

        public bool Closed { get; set; }

        public bool Rotated { get; set; }

        public bool WriteFailed { get; set; }
    }

    [LoggerMessage(3440, LogLevel.Warning, "Sandbox {SandboxId}: its agent output reached the log bound of {BoundBytes} bytes; agent.log rotates to agent.log.1 and older output is dropped")]
    private static partial void Rotated(ILogger logger, string sandboxId, long boundBytes);

    [LoggerMessage(3441, LogLevel.Error, "Sandbox {SandboxId}: writing its agent output to agent.log failed; the output is dropped")]
    private static partial void WriteFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3442, LogLevel.Error, "Sandbox {SandboxId}: reading its agent output failed: {Error}")]
    private static partial void ReadFailed(ILogger logger, string sandboxId, string error);

    [LoggerMessage(3444, LogLevel.Warning, "Sandbox {SandboxId}: cannot read its agent output pipe again; its output is lost until it ends")]
    private static partial void AdoptFailed(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3443, LogLevel.Error, "The agent log drain's poll failed: {Error}")]
    private static partial void PollFailed(ILogger logger, string error);
}
