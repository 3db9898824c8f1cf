namespace Paddock.Agent.Processes;

/// <summary>
/// When the spawn thread last was another user (<see cref="ProcessSpawner"/> switches its credentials around a
/// posix_spawn). While it is, kill(2) by that user's processes is permitted against it, so a shutdown signal that
/// arrives during or shortly after a switch may come from inside the sandbox (see <c>Hosting/SandboxInitSignals</c>).
/// </summary>
internal static class IdentitySwitches
{
    /// <summary>
    /// How long after a switch a shutdown signal stays suspect: the signal was sent during the switch (outside one the
    /// kernel refuses it to the user), and its handler runs later on another thread, later still when the sandbox's
    /// own processes hold the CPU the agent shares with them.
    /// </summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(10);

    private static int _open;
    private static long _lastClosed = long.MinValue / 2;

    public static void Open() => Interlocked.Increment(ref _open);

    public static void Close()
    {
        Volatile.Write(ref _lastClosed, Environment.TickCount64);
        Interlocked.Decrement(ref _open);
    }

    /// <summary>True while a switch is open or for <see cref="Grace"/> after the last one closed.</summary>
    public static bool Recent =>
        Volatile.Read(ref _open) > 0 || Environment.TickCount64 - Volatile.Read(ref _lastClosed) < (long)Grace.TotalMilliseconds;
}
