using System.Collections;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>
/// Runs a host program to completion with stdin from <c>/dev/null</c> and stdout and stderr appended to one file:
/// what <c>sh -c 'exec "$@" &lt;/dev/null &gt;&gt;"$log" 2&gt;&amp;1'</c> did for <c>runc run --detach</c> and
/// <c>runsc run --detach</c>, whose containers inherit that stdio, without the shell. A shell was one more exec per
/// create (issue 19: `strace -f -e trace=execve` counted it on every cold create; a `/bin/true` spawn alone costs
/// 4-5 ms of CPU on this project's VMs, bench/README.md).
/// </summary>
/// <remarks>
/// The parent opens both files (close-on-exec, so a concurrent spawn cannot inherit them) and the child only dup2s
/// them onto 0, 1 and 2 in posix_spawn's file actions: glibc runs those and the attribute steps in a
/// clone(CLONE_VM|CLONE_VFORK) child before exec, so no managed code runs between fork and exec (STYLE.md,
/// dotnet/runtime), and an error from posix_spawn is the exec's alone. The output file is opened as the shell's
/// <c>&gt;&gt;</c> opens it: <c>O_WRONLY|O_CREAT|O_APPEND</c>, mode 0666 less the umask (O_APPEND matters: the same
/// file is appended to again by a later start of the sandbox). As .NET's Process.Start does, the child gets the
/// process's environment as .NET sees it and an empty signal mask, and stays in the daemon's process group and
/// session; every signal starts at its default disposition (Process.Start restored those the daemon itself started
/// with, so a signal ignored by whoever started the daemon stayed ignored; here none is). The program is looked up in
/// PATH (posix_spawnp); Process.Start also looked in the daemon's own directory and the current directory first,
/// which hold no runtime binary.
/// </remarks>
internal static partial class OutputFileCommand
{
    private const int O_RDONLY = 0x0;
    private const int O_WRONLY = 0x1;
    private const int O_CREAT = 0x40;
    private const int O_APPEND = 0x400;
    private const int O_CLOEXEC = 0x80000;

    // glibc <spawn.h>
    private const short POSIX_SPAWN_SETSIGDEF = 0x04;
    private const short POSIX_SPAWN_SETSIGMASK = 0x08;

    // <sys/wait.h>: waitid's idtype and options.
    private const int P_PID = 1;
    private const int WEXITED = 4;
    private const int WNOHANG = 1;
    private const int WNOWAIT = 0x01000000;

    // Errors posix_spawn reports for an exec that failed (not found; found but not executable).
    private const int EACCES = 13;
    private const int ENOEXEC = 8;
    private const int ECHILD = 10;

    // Sizes of glibc's opaque types on x86-64 and aarch64 (posix_spawn_file_actions_t 80, posix_spawnattr_t 336,
    // sigset_t 128, siginfo_t 128 bytes), rounded up so a different layout cannot overrun them.
    private const int FileActionsSize = 256;
    private const int AttributesSize = 512;
    private const int SigSetSize = 128;
    private const int SigInfoSize = 256;
    private const int SIGKILL = 9;
    private const int SIGSTOP = 19;

    /// <summary>
    /// Runs <paramref name="fileName"/> (looked up in PATH) with <paramref name="arguments"/>, its stdin /dev/null and
    /// its stdout and stderr appended to <paramref name="outputPath"/> (created if missing), and returns its exit
    /// status: the code it exited with, or 128 + the signal that ended it. When <paramref name="cancellationToken"/>
    /// fires, SIGKILLs it and the processes it started (as Process.Kill(entireProcessTree) did), waits for it and
    /// throws <see cref="OperationCanceledException"/>. Throws <see cref="FileNotFoundException"/> when the program is
    /// not found or cannot be executed (the message says which), and <see cref="IOException"/> when the output file
    /// cannot be opened.
    /// </summary>
    public static async Task<int> RunAsync(string fileName, IReadOnlyList<string> arguments, string outputPath, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var stdin = Open("/dev/null", O_RDONLY | O_CLOEXEC);
        using var output = Open(outputPath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC);
        var pid = Spawn(fileName, arguments, (int)stdin.DangerousGetHandle(), (int)output.DangerousGetHandle());
        var child = new Child(pid);
        // Blocks in waitid for the program's run (a runtime's start: tens of ms) on a thread of its own, not a pool
        // thread, so that many creates at once cannot starve the pool.
        var wait = Task.Factory.StartNew(child.Wait, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        int status;
        await using (cancellationToken.Register(child.KillTree))
        {
            status = await wait;
        }
        return child.Killed ? throw new OperationCanceledException(cancellationToken) : status;
    }

    private static SafeFileHandle Open(string path, int flags)
    {
        var fd = open(path, flags, 0x1B6 /* 0666 */);
        return fd >= 0 ? new SafeFileHandle(fd, ownsHandle: true) : throw Errno.Exception("open", path, Marshal.GetLastPInvokeError());
    }

    private static unsafe int Spawn(string fileName, IReadOnlyList<string> arguments, int stdinFd, int outputFd)
    {
        var environment = new List<string>();
        foreach (DictionaryEntry e in Environment.GetEnvironmentVariables())
        {
            environment.Add($"{e.Key}={e.Value}");
        }
        using var file = new NativeStrings([fileName]);
        using var argv = new NativeStrings([fileName, .. arguments]);
        using var envp = new NativeStrings(environment);
        var actions = NativeMemory.AllocZeroed(FileActionsSize);
        var attr = NativeMemory.AllocZeroed(AttributesSize);
        var sigset = NativeMemory.AllocZeroed(SigSetSize);
        try
        {
            Check(posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
            Check(posix_spawnattr_init(attr), "posix_spawnattr_init");
            try
            {
                // dup2 gives the copies 0, 1 and 2 without FD_CLOEXEC; the originals close at exec.
                Check(posix_spawn_file_actions_adddup2(actions, stdinFd, 0), "posix_spawn_file_actions_adddup2");
                Check(posix_spawn_file_actions_adddup2(actions, outputFd, 1), "posix_spawn_file_actions_adddup2");
                Check(posix_spawn_file_actions_adddup2(actions, outputFd, 2), "posix_spawn_file_actions_adddup2");
                // The .NET runtime ignores SIGPIPE and handles others; an ignored signal would survive the exec.
                _ = sigfillset(sigset);
                _ = sigdelset(sigset, SIGKILL);
                _ = sigdelset(sigset, SIGSTOP);
                // sigfillset leaves out glibc's own signals 32 and 33 (SIGCANCEL, SIGSETXID), and for a signal not in
                // this set glibc's child sets those two to SIG_IGN before the exec, so the program would start with
                // them ignored (measured: SigIgn 0x180000000); Process.Start's child had them at their default. The
                // set is glibc's sigset_t, bit (signal - 1) of an array of unsigned longs.
                *(ulong*)sigset |= (1UL << 31) | (1UL << 32);
                Check(posix_spawnattr_setsigdefault(attr, sigset), "posix_spawnattr_setsigdefault");
                // Runtime threads may block signals; the program starts with none blocked.
                _ = sigemptyset(sigset);
                Check(posix_spawnattr_setsigmask(attr, sigset), "posix_spawnattr_setsigmask");
                Check(posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK), "posix_spawnattr_setflags");
                int pid;
                var rc = posix_spawnp(&pid, file.Pointers[0], actions, attr, argv.Pointers, envp.Pointers);
                return rc switch
                {
                    0 => pid,
                    Errno.ENOENT => throw new FileNotFoundException($"cannot run {fileName}: not found", fileName),
                    EACCES or ENOEXEC => throw new FileNotFoundException($"cannot run {fileName}: not executable ({Errno.Describe(rc)})", fileName),
                    _ => throw new IOException($"posix_spawn of {fileName}: {Errno.Describe(rc)} (errno {rc})", rc),
                };
            }
            finally
            {
                posix_spawnattr_destroy(attr);
                posix_spawn_file_actions_destroy(actions);
            }
        }
        finally
        {
            NativeMemory.Free(sigset);
            NativeMemory.Free(attr);
            NativeMemory.Free(actions);
        }
    }

    private static void Check(int rc, string call)
    {
        if (rc != 0)
        {
            throw new IOException($"{call}: {Errno.Describe(rc)} (errno {rc})", rc);
        }
    }

    /// <summary>
    /// One spawned child: waited for without reaping first, so that its pid cannot be reused while a cancellation may
    /// still signal it; only after <see cref="_exited"/> is set (under the lock) is it reaped.
    /// </summary>
    private sealed class Child(int pid)
    {
        private readonly Lock _gate = new();
        private bool _exited;

        /// <summary>Whether <see cref="KillTree"/> signalled it before it exited.</summary>
        public bool Killed { get; private set; }

        public unsafe int Wait()
        {
            var info = stackalloc byte[SigInfoSize];
            while (waitid(P_PID, (uint)pid, info, WEXITED | WNOWAIT) != 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno == Errno.EINTR)
                {
                    continue;
                }
                // ECHILD: someone else reaped it (a SIGCHLD set to SIG_IGN when the daemon started makes the .NET
                // runtime reap every child); its status is lost.
                throw new IOException($"waitid for pid {pid}: {Errno.Describe(errno)} (errno {errno})", errno);
            }
            lock (_gate)
            {
                _exited = true;
            }
            int status;
            var reaped = waitpid(pid, &status, WNOHANG);
            if (reaped != pid)
            {
                var errno = reaped < 0 ? Marshal.GetLastPInvokeError() : ECHILD;
                throw new IOException($"waitpid for pid {pid}: {Errno.Describe(errno)} (errno {errno})", errno);
            }
            // WIFEXITED: the low 7 bits are 0 and the code is the next byte; else they are the signal, reported as a
            // shell would (and Process.ExitCode does): 128 + the signal.
            return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
        }

        public void KillTree()
        {
            lock (_gate)
            {
                if (_exited)
                {
                    return;
                }
                Killed = true;
                try
                {
                    // Unreaped, so the pid is still this child's (a zombie at worst) while the lock is held.
                    using var process = Process.GetProcessById(pid);
                    process.Kill(entireProcessTree: true);
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or AggregateException or System.ComponentModel.Win32Exception)
                {
                    // It ended meanwhile, or part of its tree did; the wait sees the rest.
                }
            }
        }
    }

    /// <summary>A NULL-terminated array of NUL-terminated UTF-8 strings (argv, envp) in native memory.</summary>
    private sealed unsafe class NativeStrings : IDisposable
    {
        private readonly int _count;

        public NativeStrings(IReadOnlyList<string> strings)
        {
            _count = strings.Count;
            Pointers = (byte**)NativeMemory.AllocZeroed((nuint)(strings.Count + 1), (nuint)sizeof(nint));
            for (var i = 0; i < strings.Count; i++)
            {
                Pointers[i] = (byte*)Marshal.StringToCoTaskMemUTF8(strings[i]);
            }
        }

        public byte** Pointers { get; }

        public void Dispose()
        {
            for (var i = 0; i < _count; i++)
            {
                Marshal.FreeCoTaskMem((nint)Pointers[i]);
            }
            NativeMemory.Free(Pointers);
        }
    }

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags, uint mode);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int waitid(int idtype, uint id, void* info, int options);

    [LibraryImport("libc", SetLastError = true)]
    private static unsafe partial int waitpid(int pid, int* status, int options);

    // posix_spawn* return an error number (0 on success) instead of setting errno.
    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnp(int* pid, byte* file, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnattr_init(void* attr);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnattr_destroy(void* attr);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnattr_setflags(void* attr, short flags);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnattr_setsigdefault(void* attr, void* sigset);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawnattr_setsigmask(void* attr, void* sigset);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawn_file_actions_init(void* actions);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawn_file_actions_destroy(void* actions);

    [LibraryImport("libc")]
    private static unsafe partial int posix_spawn_file_actions_adddup2(void* actions, int fd, int newfd);

    // sigset helpers: -1 only for an invalid signal number, which these constants are not.
    [LibraryImport("libc")]
    private static unsafe partial int sigemptyset(void* set);

    [LibraryImport("libc")]
    private static unsafe partial int sigfillset(void* set);

    [LibraryImport("libc")]
    private static unsafe partial int sigdelset(void* set, int signo);
}
