using System.Runtime.InteropServices;

namespace Paddock.Agent.Hosting;

/// <summary>
/// As PID 1 of a sandbox, the agent ignores the shutdown signals (SIGTERM, SIGINT, SIGQUIT, SIGHUP) instead of
/// stopping on them as a console app does.
/// </summary>
/// <remarks>
/// Why: the kernel drops a signal sent to a pid namespace's init from inside the namespace unless init handles it,
/// and .NET's console lifetime handles exactly these. Since the agent starts a command as another user by switching
/// its spawn thread to that user for the posix_spawn (ProcessSpawner.StartAsUser), a process of that user may signal
/// that thread meanwhile; with the console lifetime, one SIGTERM then stopped the agent and with it the sandbox.
/// Nothing needs these signals: the daemon ends a sandbox with <c>runc delete --force</c> (SIGKILL from the host),
/// which no handler can refuse. Outside a sandbox (tests, a bare agent) the agent is not PID 1 and keeps the usual
/// Ctrl-C / SIGTERM shutdown.
/// </remarks>
internal static class SandboxInitSignals
{
    private static readonly PosixSignal[] Shutdown = [PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT, PosixSignal.SIGHUP];

    /// <summary>True when this process is the init of its pid namespace (the agent in a sandbox).</summary>
    public static bool IsInit => Environment.ProcessId == 1;

    /// <summary>Registers handlers that cancel the signals' default handling; keep the result alive for the process's life.</summary>
    public static IReadOnlyList<PosixSignalRegistration> Ignore() =>
        [.. Shutdown.Select(signal => PosixSignalRegistration.Create(signal, context => context.Cancel = true))];
}

/// <summary>The host lifetime of the agent as PID 1: starts at once and never stops the host on a signal.</summary>
internal sealed class SandboxInitLifetime : Microsoft.Extensions.Hosting.IHostLifetime
{
    public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
