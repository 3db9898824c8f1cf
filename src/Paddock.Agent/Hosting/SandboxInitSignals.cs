using System.Runtime.InteropServices;
using Paddock.Agent.Processes;

namespace Paddock.Agent.Hosting;

/// <summary>
/// The host lifetime of the agent as PID 1 of a sandbox: like the console lifetime it stops the agent on SIGTERM,
/// SIGINT or SIGQUIT (ProcessSupervisor then forwards the signal to the sandbox's processes), except a signal that may
/// come from one of the sandbox's own processes, which it ignores and logs.
/// </summary>
/// <remarks>
/// Why: the agent starts a command as another user by switching its spawn thread to that user for the posix_spawn,
/// and meanwhile kill(2) by that user's processes is permitted against that thread and reaches the whole agent. As
/// PID 1 the kernel drops signals from inside the sandbox that have no handler, but these three are handled. A signal
/// from outside (the host, `runc kill`) cannot be told apart here (.NET gives no siginfo), so one that arrives during
/// or within <see cref="IdentitySwitches.Grace"/> of a switch is ignored; the host can send it again, or SIGKILL
/// (what the daemon uses), which nothing refuses. Outside a sandbox the agent is not PID 1 and keeps the console
/// lifetime.
/// </remarks>
internal sealed partial class SandboxInitLifetime : Microsoft.Extensions.Hosting.IHostLifetime, IDisposable
{
    private readonly IHostApplicationLifetime _application;
    private readonly ILogger<SandboxInitLifetime> _logger;
    private readonly List<PosixSignalRegistration> _registrations = [];

    public SandboxInitLifetime(IHostApplicationLifetime application, ILogger<SandboxInitLifetime> logger)
    {
        _application = application;
        _logger = logger;
    }

    /// <summary>True when this process is the init of its pid namespace (the agent in a sandbox).</summary>
    public static bool IsInit => Environment.ProcessId == 1;

    public Task WaitForStartAsync(CancellationToken cancellationToken)
    {
        foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT })
        {
            _registrations.Add(PosixSignalRegistration.Create(signal, OnSignal));
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }

    private void OnSignal(PosixSignalContext context)
    {
        context.Cancel = true;
        if (IdentitySwitches.Recent)
        {
            LogIgnored(_logger, context.Signal);
            return;
        }
        _application.StopApplication();
    }

    [LoggerMessage(2300, LogLevel.Warning, "Ignored {Signal}: it arrived during or just after a start as another user, so it may come from a process of the sandbox; send it again, or SIGKILL")]
    private static partial void LogIgnored(ILogger logger, PosixSignal signal);
}
