using System.Runtime.InteropServices;
using System.Text;

namespace Paddock.Bench.Native;

/// <summary>
/// A command line marshalled once into native memory, spawned with posix_spawn as often as needed. Marshalling is
/// done up front so a timed loop measures the kernel's spawn and reap, not string conversion.
/// </summary>
internal sealed unsafe class Spawner : IDisposable
{
    private readonly List<nint> _allocations = [];
    private readonly byte* _path;
    private readonly byte** _argv;
    private readonly byte** _envp;
    private readonly byte* _devNull;
    private readonly bool _quiet;

    /// <param name="path">Absolute path of the program.</param>
    /// <param name="args">argv[1..].</param>
    /// <param name="quiet">Send the child's stdout and stderr to /dev/null (its stdin is always /dev/null).</param>
    /// <param name="environment">The child's environment; null: this process's.</param>
    public Spawner(string path, IReadOnlyList<string> args, bool quiet, IReadOnlyDictionary<string, string>? environment = null)
    {
        Path = path;
        _quiet = quiet;
        _path = Utf8(path);
        _devNull = Utf8("/dev/null");
        _argv = Array([path, .. args]);
        var env = environment ?? Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "");
        _envp = Array([.. env.Select(kv => $"{kv.Key}={kv.Value}")]);
    }

    public string Path { get; }

    /// <summary>Starts the program; throws <see cref="IOException"/> with posix_spawn's error.</summary>
    public int Spawn() => Spawn(stdoutFd: -1);

    /// <summary>Starts the program with its stdout on <paramref name="stdoutFd"/> (-1: /dev/null or inherited, per quiet).</summary>
    public int Spawn(int stdoutFd)
    {
        var actions = stackalloc byte[Posix.FileActionsSize];
        Check(Posix.FileActionsInit(actions), "posix_spawn_file_actions_init");
        try
        {
            Check(Posix.FileActionsAddOpen(actions, 0, _devNull, Posix.O_RDONLY, 0), "posix_spawn_file_actions_addopen");
            if (stdoutFd >= 0)
            {
                Check(Posix.FileActionsAddDup2(actions, stdoutFd, 1), "posix_spawn_file_actions_adddup2");
            }
            else if (_quiet)
            {
                Check(Posix.FileActionsAddOpen(actions, 1, _devNull, Posix.O_WRONLY, 0), "posix_spawn_file_actions_addopen");
            }
            if (_quiet)
            {
                Check(Posix.FileActionsAddOpen(actions, 2, _devNull, Posix.O_WRONLY, 0), "posix_spawn_file_actions_addopen");
            }
            var error = Posix.PosixSpawn(out var pid, _path, actions, null, _argv, _envp);
            if (error != 0)
            {
                throw new IOException($"posix_spawn {Path} failed: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
            }
            return pid;
        }
        finally
        {
            Posix.FileActionsDestroy(actions);
        }
    }

    /// <summary>Blocks until <paramref name="pid"/> ends and reaps it; returns its exit code (negative: killed by that signal).</summary>
    public static int Wait(int pid)
    {
        while (true)
        {
            var reaped = Posix.WaitPid(pid, out var status, 0);
            if (reaped == pid)
            {
                return Posix.ExitCode(status);
            }
            var errno = Marshal.GetLastPInvokeError();
            if (reaped == -1 && errno == Posix.EINTR)
            {
                continue;
            }
            throw new IOException($"waitpid({pid}) failed: {Marshal.GetPInvokeErrorMessage(errno)}");
        }
    }

    /// <summary>
    /// Sends SIGTERM, waits up to <paramref name="grace"/> for the exit, then SIGKILLs and reaps. Returns the exit code.
    /// </summary>
    public static int Stop(int pid, TimeSpan grace)
    {
        Posix.Kill(pid, Posix.SIGTERM);
        var deadline = Environment.TickCount64 + (long)grace.TotalMilliseconds;
        while (Environment.TickCount64 < deadline)
        {
            var reaped = Posix.WaitPid(pid, out var status, Posix.WNOHANG);
            if (reaped == pid)
            {
                return Posix.ExitCode(status);
            }
            if (reaped == -1 && Marshal.GetLastPInvokeError() != Posix.EINTR)
            {
                throw new IOException($"waitpid({pid}) failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }
            Thread.Sleep(5);
        }
        Posix.Kill(pid, Posix.SIGKILL);
        return Wait(pid);
    }

    private static void Check(int error, string call)
    {
        if (error != 0)
        {
            throw new IOException($"{call} failed: {Marshal.GetPInvokeErrorMessage(error)}");
        }
    }

    private byte* Utf8(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var native = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
        bytes.CopyTo(new Span<byte>(native, bytes.Length));
        native[bytes.Length] = 0;
        _allocations.Add((nint)native);
        return native;
    }

    private byte** Array(string[] items)
    {
        var array = (byte**)NativeMemory.Alloc((nuint)(items.Length + 1), (nuint)sizeof(byte*));
        _allocations.Add((nint)array);
        for (var i = 0; i < items.Length; i++)
        {
            array[i] = Utf8(items[i]);
        }
        array[items.Length] = null;
        return array;
    }

    public void Dispose()
    {
        foreach (var p in _allocations)
        {
            NativeMemory.Free((void*)p);
        }
        _allocations.Clear();
    }
}
