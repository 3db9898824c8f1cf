using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>
/// Changing identity and replacing the process image: only the exec helper calls the setters and execve, in a
/// process of its own (posix_spawn cannot switch users). Each returns 0 or the errno.
/// </summary>
internal static unsafe partial class Credentials
{
    /// <summary>The agent's supplementary groups (getgroups(2)).</summary>
    public static uint[] GetGroups()
    {
        var count = getgroups(0, null);
        if (count <= 0)
        {
            return [];
        }
        var groups = new uint[count];
        fixed (uint* p = groups)
        {
            count = getgroups(count, p);
        }
        return count < 0 ? [] : groups[..count];
    }

    /// <summary>setgroups(2): needs CAP_SETGID.</summary>
    public static int SetGroups(ReadOnlySpan<uint> groups)
    {
        fixed (uint* p = groups)
        {
            return setgroups((nuint)groups.Length, p) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary>Real, effective and saved group id at once (setresgid(2)).</summary>
    public static int SetGid(uint gid) => setresgid(gid, gid, gid) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Real, effective and saved user id at once (setresuid(2)); after it, root's privileges are gone.</summary>
    public static int SetUid(uint uid) => setresuid(uid, uid, uid) == 0 ? 0 : Marshal.GetLastPInvokeError();

    public static int ChangeDirectory(string path) => chdir(path) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>execve(2); returns only on failure, with the errno.</summary>
    public static int Execute(string path, IReadOnlyList<string> argv, IReadOnlyList<string> envp)
    {
        using var nativePath = new Spawn.NativeStrings([path]);
        using var nativeArgv = new Spawn.NativeStrings(argv);
        using var nativeEnvp = new Spawn.NativeStrings(envp);
        execve(nativePath.Pointers[0], nativeArgv.Pointers, nativeEnvp.Pointers);
        return Marshal.GetLastPInvokeError();
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getgroups(int size, uint* list);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setgroups(nuint size, uint* list);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setresgid(uint rgid, uint egid, uint sgid);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setresuid(uint ruid, uint euid, uint suid);

    [LibraryImport("libc", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int chdir(string path);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int execve(byte* path, byte** argv, byte** envp);
}
