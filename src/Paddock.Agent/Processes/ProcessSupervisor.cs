using System.Runtime.InteropServices;
using Paddock.Agent.Native;

namespace Paddock.Agent.Processes;

/// <summary>
/// Ends the sandbox's processes when the agent stops. The host stops on SIGTERM, SIGINT or SIGQUIT (its console
/// lifetime handles them); this service forwards the signal that stopped it (SIGTERM otherwise) to every process
/// group the agent started, and, when the agent is PID 1, to every process of the sandbox (kill(-1)), since the
/// kernel delivers nothing to an init that has no handler and everything dies with init. It then waits a bounded
/// time for them to exit, kills whatever is left, and lets the host finish.
/// </summary>
/// <remarks>
/// The signals go out when the application starts stopping, before any hosted service stops: Kestrel, stopped first,
/// waits for open requests, and a process stream ends only when its process does, so waiting for our StopAsync would
/// hold every stream for Kestrel's whole shutdown timeout and then cut it without its end event.
/// </remarks>
internal sealed class ProcessSupervisor : IHostedService, IDisposable
{
    internal static readonly TimeSpan TermGrace = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan KillGrace = TimeSpan.FromSeconds(2);

    private readonly ProcessTable _table;
    private readonly ChildReaper _reaper;
    private readonly ILogger<ProcessSupervisor> _logger;
    private readonly IHostApplicationLifetime _lifetime;
    private readonly List<PosixSignalRegistration> _registrations = [];
    private readonly Lock _gate = new();
    private int _stopSignal = Signals.SIGTERM;
    private Task? _shutdown;

    public ProcessSupervisor(ProcessTable table, ChildReaper reaper, IHostApplicationLifetime lifetime, ILogger<ProcessSupervisor> logger)
    {
        _table = table;
        _reaper = reaper;
        _lifetime = lifetime;
        _logger = logger;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // Only records which signal arrived; the host's own handler cancels the default action and stops the host.
        foreach (var (signal, number) in new[] { (PosixSignal.SIGTERM, Signals.SIGTERM), (PosixSignal.SIGINT, Signals.SIGINT), (PosixSignal.SIGQUIT, Signals.SIGQUIT) })
        {
            _registrations.Add(PosixSignalRegistration.Create(signal, _ => Volatile.Write(ref _stopSignal, number)));
        }
        _lifetime.ApplicationStopping.Register(() => Shutdown());
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Shutdown().WaitAsync(cancellationToken);

    private Task Shutdown()
    {
        lock (_gate)
        {
            return _shutdown ??= ShutdownAsync(CancellationToken.None);
        }
    }

    private async Task ShutdownAsync(CancellationToken cancellationToken)
    {
        var signal = Volatile.Read(ref _stopSignal);
        var processes = _table.Snapshot();
        ProcessLog.Forwarding(_logger, signal, processes.Length, _reaper.IsInit);
        foreach (var p in processes)
        {
            p.Signal(signal);
        }
        if (_reaper.IsInit)
        {
            _ = Signals.Send(-1, signal);
        }
        var exits = Task.WhenAll(processes.Select(p => p.Exited));
        if (await Finished(exits, TermGrace, cancellationToken))
        {
            return;
        }
        foreach (var p in processes)
        {
            p.Signal(Signals.SIGKILL);
        }
        if (_reaper.IsInit)
        {
            _ = Signals.Send(-1, Signals.SIGKILL);
        }
        await Finished(exits, KillGrace, cancellationToken);
    }

    private static async Task<bool> Finished(Task exits, TimeSpan grace, CancellationToken cancellationToken)
    {
        try
        {
            await exits.WaitAsync(grace, cancellationToken);
            return true;
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose()
    {
        foreach (var r in _registrations)
        {
            r.Dispose();
        }
    }
}
