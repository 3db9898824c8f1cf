using System.Collections.Concurrent;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// How many times each sandbox has been resumed in this daemon, for the proxy's connection pool
/// (<see cref="Proxy.SandboxHttpClient"/>): the pool keys connections by authority, and a resumed sandbox's authority
/// carries its incarnation, so that no request goes out on a connection from before the pause. Measured: a request on
/// such a connection hung (the restored netstack dropped the connection at the checkpoint, <c>--net-disconnect-ok</c>,
/// and answered the host's segments with nothing, not a reset), until the SDK's own timeout. Static because the one
/// pool is the daemon's; an id never seen is incarnation 0, and the old connections idle out of the pool in 30 s.
/// </summary>
internal static class SandboxIncarnations
{
    private static readonly ConcurrentDictionary<string, int> Counts = new(StringComparer.Ordinal);

    public static int Of(string sandboxId) => Counts.TryGetValue(sandboxId, out var n) ? n : 0;

    /// <summary>Called when the sandbox's processes may have lost their connections (a pause, a resume).</summary>
    public static void Renew(string sandboxId) => Counts.AddOrUpdate(sandboxId, 1, (_, n) => n + 1);

    public static void Forget(string sandboxId) => Counts.TryRemove(sandboxId, out _);
}
