using System.Runtime.InteropServices;

namespace Paddock.Bench.Native;

/// <summary>
/// The libc calls the bench spawns and reaps processes with. The baseline must be the bare cost of a process, so it
/// goes through posix_spawn and waitpid directly: Process.Start adds pipes, a SIGCHLD handler thread and managed
/// bookkeeping that would flatter the agent.
/// </summary>
internal static unsafe partial class Posix
{
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int WNOHANG = 1;
    public const int O_WRONLY = 0x1;
    public const int O_RDONLY = 0x0;
    public const int EINTR = 4;

    /// <summary>glibc's posix_spawn_file_actions_t is 80 bytes on x86-64; a larger buffer leaves room on other ABIs.</summary>
    public const int FileActionsSize = 256;

    /// <summary>
    /// posix_spawn(3): returns 0, or an error number (it does not set errno). The child starts executing
    /// <paramref name="path"/> before this returns on glibc (it uses CLONE_VM|CLONE_VFORK), so no managed code runs
    /// in the child.
    /// </summary>
    [LibraryImport("libc", EntryPoint = "posix_spawn")]
    public static partial int PosixSpawn(out int pid, byte* path, void* fileActions, void* attributes, byte** argv, byte** envp);

    /// <summary>posix_spawn_file_actions_init(3): 0, or ENOMEM.</summary>
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    public static partial int FileActionsInit(void* fileActions);

    /// <summary>posix_spawn_file_actions_addopen(3): 0, or EBADF/ENOMEM/EINVAL.</summary>
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen")]
    public static partial int FileActionsAddOpen(void* fileActions, int fd, byte* path, int flags, uint mode);

    /// <summary>posix_spawn_file_actions_adddup2(3): 0, or EBADF/ENOMEM.</summary>
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    public static partial int FileActionsAddDup2(void* fileActions, int fd, int newFd);

    /// <summary>posix_spawn_file_actions_destroy(3): 0, or EINVAL.</summary>
    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    public static partial int FileActionsDestroy(void* fileActions);

    /// <summary>waitpid(2): the pid reaped, 0 with WNOHANG when it still runs, or -1 with errno (ECHILD, EINTR).</summary>
    [LibraryImport("libc", EntryPoint = "waitpid", SetLastError = true)]
    public static partial int WaitPid(int pid, out int status, int options);

    /// <summary>kill(2): 0, or -1 with errno (ESRCH, EPERM).</summary>
    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    public static partial int Kill(int pid, int signal);

    /// <summary>pipe2(2): 0, or -1 with errno (EMFILE, ENFILE).</summary>
    [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
    public static partial int Pipe2(int* fds, int flags);

    /// <summary>read(2): bytes read, 0 at end of file, or -1 with errno.</summary>
    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nuint count);

    /// <summary>close(2): 0, or -1 with errno (the fd is released either way on Linux).</summary>
    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    public const int O_CLOEXEC = 0x80000;

    /// <summary>The exit code of a process that exited normally (WIFEXITED/WEXITSTATUS), else -(signal number).</summary>
    public static int ExitCode(int status) => (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f);
}
