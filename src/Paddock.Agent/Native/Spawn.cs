using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// posix_spawn(3) and its attribute and file-action objects (glibc). glibc spawns with clone(CLONE_VM|CLONE_VFORK),
/// runs the attribute steps (signal defaults, signal mask, setsid) and then the file actions in the child, then
/// execs; no managed code runs in between, as dotnet/runtime requires. Every function returns an error number
/// (0 on success) instead of setting errno.
/// </summary>
internal static unsafe partial class Spawn
{
    // glibc <spawn.h>
    public const short POSIX_SPAWN_SETSIGDEF = 0x04;
    public const short POSIX_SPAWN_SETSIGMASK = 0x08;
    public const short POSIX_SPAWN_SETSID = 0x80;

    // Sizes of the opaque glibc types on x86-64 and aarch64 (posix_spawn_file_actions_t: 80 bytes,
    // posix_spawnattr_t: 336 bytes), rounded up so a different layout cannot overrun them.
    private const int FileActionsSize = 256;
    private const int AttributesSize = 512;
    private const int SigSetSize = 128;

    /// <summary>
    /// Starts <paramref name="path"/> with <paramref name="argv"/> and <paramref name="envp"/> (each "KEY=VALUE"),
    /// applying <paramref name="fileActions"/> in order in the child after it became a session leader with default
    /// signal dispositions and an empty signal mask. Returns 0 and the pid, or the error number of the failing
    /// step (posix_spawn reports the child's exec failure too, since glibc 2.24).
    /// </summary>
    public static int Start(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp, FileActions fileActions, out int pid)
    {
        pid = 0;
        using var nativePath = new NativeStrings([path]);
        using var nativeArgv = new NativeStrings(argv);
        using var nativeEnvp = new NativeStrings(envp);
        var attr = NativeMemory.AllocZeroed(AttributesSize);
        var sigset = NativeMemory.AllocZeroed(SigSetSize);
        try
        {
            var rc = posix_spawnattr_init(attr);
            if (rc != 0)
            {
                return rc;
            }
            try
            {
                // Every signal back to its default: the .NET runtime ignores SIGPIPE, and an ignored signal would
                // survive exec (`yes | head` would then see EPIPE instead of dying).
                sigfillset(sigset);
                sigdelset(sigset, Signals.SIGKILL);
                sigdelset(sigset, Signals.SIGSTOP);
                rc = posix_spawnattr_setsigdefault(attr, sigset);
                if (rc != 0)
                {
                    return rc;
                }
                // Runtime threads may block signals; the child starts with none blocked.
                sigemptyset(sigset);
                rc = posix_spawnattr_setsigmask(attr, sigset);
                if (rc != 0)
                {
                    return rc;
                }
                // A session of its own: the process group id equals the pid (signals reach the whole tree), and a
                // terminal opened by a file action afterwards becomes its controlling terminal.
                rc = posix_spawnattr_setflags(attr, (short)(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSID));
                if (rc != 0)
                {
                    return rc;
                }
                int child;
                rc = posix_spawn(&child, nativePath.Pointers[0], fileActions.Pointer, attr, nativeArgv.Pointers, nativeEnvp.Pointers);
                if (rc == 0)
                {
                    pid = child;
                }
                return rc;
            }
            finally
            {
                posix_spawnattr_destroy(attr);
            }
        }
        finally
        {
            NativeMemory.Free(sigset);
            NativeMemory.Free(attr);
        }
    }

    /// <summary>A posix_spawn_file_actions_t: steps the child takes on its descriptors before exec.</summary>
    internal sealed class FileActions : IDisposable
    {
        private readonly List<nint> _strings = [];
        private bool _disposed;

        public FileActions()
        {
            Pointer = NativeMemory.AllocZeroed(FileActionsSize);
            var rc = posix_spawn_file_actions_init(Pointer);
            if (rc != 0)
            {
                NativeMemory.Free(Pointer);
                throw new InvalidOperationException($"posix_spawn_file_actions_init failed: {Errno.Message(rc)}");
            }
        }

        public void* Pointer { get; }

        /// <summary>dup2(fd, target) in the child; the copy loses FD_CLOEXEC, the original is closed at exec.</summary>
        public void Dup2(int fd, int target) => Check(posix_spawn_file_actions_adddup2(Pointer, fd, target), "adddup2");

        /// <summary>open(path, flags) as descriptor <paramref name="target"/> in the child.</summary>
        public void Open(int target, string path, int flags) =>
            Check(posix_spawn_file_actions_addopen(Pointer, target, Keep(path), flags, 0), "addopen");

        /// <summary>chdir(path) in the child (glibc 2.29).</summary>
        public void ChangeDirectory(string path) => Check(posix_spawn_file_actions_addchdir_np(Pointer, Keep(path)), "addchdir_np");

        private byte* Keep(string text)
        {
            // glibc copies the path since 2.21 (bug 17048); keeping our copy alive until destroy costs nothing.
            var p = Marshal.StringToCoTaskMemUTF8(text);
            _strings.Add(p);
            return (byte*)p;
        }

        private static void Check(int rc, string what)
        {
            if (rc != 0)
            {
                throw new InvalidOperationException($"posix_spawn_file_actions_{what} failed: {Errno.Message(rc)}");
            }
        }

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            posix_spawn_file_actions_destroy(Pointer);
            NativeMemory.Free(Pointer);
            foreach (var p in _strings)
            {
                Marshal.FreeCoTaskMem(p);
            }
        }
    }

    /// <summary>A NULL-terminated array of NUL-terminated UTF-8 strings (argv, envp) in native memory.</summary>
    internal sealed class NativeStrings : IDisposable
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

    [LibraryImport("libc")]
    private static partial int posix_spawn(int* pid, byte* path, void* fileActions, void* attr, byte** argv, byte** envp);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_init(void* attr);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_destroy(void* attr);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setflags(void* attr, short flags);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigdefault(void* attr, void* sigset);

    [LibraryImport("libc")]
    private static partial int posix_spawnattr_setsigmask(void* attr, void* sigset);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_init(void* actions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_destroy(void* actions);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_adddup2(void* actions, int fd, int newfd);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_addopen(void* actions, int fd, byte* path, int oflag, uint mode);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_addchdir_np(void* actions, byte* path);

    // sigset helpers: return -1 only for an invalid signal number, which these constants are not.
    [LibraryImport("libc")]
    internal static partial int sigemptyset(void* set);

    [LibraryImport("libc")]
    internal static partial int sigfillset(void* set);

    [LibraryImport("libc")]
    internal static partial int sigdelset(void* set, int signo);
}
