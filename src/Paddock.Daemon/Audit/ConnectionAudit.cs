using System.Collections.Concurrent;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Audit;

/// <summary>
/// Puts what the <see cref="ConnectionObserver"/> of each tier sees into the audit trail: <see cref="AuditKinds.Connection"/>
/// for an attempt (allowed, proxied or denied), <see cref="AuditKinds.ConnectionEnd"/> for the end of an allowed flow
/// with its bytes. The trail needs the sandbox's team: known from the running sandbox, kept for the sandbox's later
/// events (a flow's end is often seen while the sandbox is being killed), read from the store otherwise.
/// </summary>
internal sealed class ConnectionAudit : IConnectionSink
{
    /// <summary>Teams of sandboxes seen, at most; beyond, the map starts again (a lookup in the store refills it).</summary>
    private const int MaxTeams = 65536;

    private readonly AuditTrail _trail;
    private readonly IServiceProvider _services;
    private readonly ILogger<ConnectionAudit> _logger;
    private readonly ConcurrentDictionary<string, string> _teams = new(StringComparer.Ordinal);

    // The manager is resolved on first use: it depends on the runtime, which depends on this sink.
    public ConnectionAudit(AuditTrail trail, IServiceProvider services, ILogger<ConnectionAudit> logger)
    {
        _trail = trail;
        _services = services;
        _logger = logger;
    }

    public void Observed(ConnectionEvent connection)
    {
        if (!_trail.Enabled)
        {
            return;
        }
        var e = ToAuditEvent(connection);
        if (_teams.TryGetValue(connection.SandboxId, out var team))
        {
            _trail.Record(connection.SandboxId, team, e);
            return;
        }
        if (_services.GetRequiredService<SandboxManager>().TryGetRunning(connection.SandboxId, out var record))
        {
            Remember(connection.SandboxId, record.TeamId);
            _trail.Record(connection.SandboxId, record.TeamId, e);
            return;
        }
        // Not running (ended, or still being made): the store knows its team. Off the observer's thread.
        _ = Task.Run(async () =>
        {
            try
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                var stored = await _services.GetRequiredService<ISandboxStore>().GetAsync(connection.SandboxId, timeout.Token);
                if (stored is not null)
                {
                    Remember(connection.SandboxId, stored.TeamId);
                    _trail.Record(connection.SandboxId, stored.TeamId, e);
                }
            }
            catch (Exception ex)
            {
                // The store failing (locked, unreachable) loses this one event; the daemon goes on.
                AuditLog.ConnectionUnrecorded(_logger, connection.SandboxId, ex);
            }
        });
    }

    private void Remember(string sandboxId, string teamId)
    {
        if (_teams.Count >= MaxTeams)
        {
            _teams.Clear();
        }
        _teams[sandboxId] = teamId;
    }

    internal static AuditEvent ToAuditEvent(ConnectionEvent c) => new()
    {
        At = c.At,
        Kind = c.Phase == ConnectionPhase.End ? AuditKinds.ConnectionEnd : AuditKinds.Connection,
        Address = c.Destination.ToString(),
        Port = c.Port,
        Protocol = c.Protocol,
        Verdict = c.Verdict,
        BytesOut = c.BytesOut,
        BytesIn = c.BytesIn,
        Bytes = c.BytesOut is { } o && c.BytesIn is { } i ? o + i : null,
        DurationMs = c.Duration is { } d ? (long)d.TotalMilliseconds : null,
        Note = c.Note,
    };
}
