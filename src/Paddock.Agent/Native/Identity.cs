using System.Runtime.InteropServices;

namespace Paddock.Agent.Native;

/// <summary>The agent's own credentials (libc geteuid/getegid; neither can fail, POSIX.1-2008).</summary>
internal static partial class Identity
{
    public static uint GetEffectiveUid() => geteuid();

    public static uint GetEffectiveGid() => getegid();

    [LibraryImport("libc")]
    private static partial uint geteuid();

    [LibraryImport("libc")]
    private static partial uint getegid();
}
