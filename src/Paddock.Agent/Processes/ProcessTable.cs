using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Processes;

/// <summary>
/// The processes the agent started and that have not finished yet, by pid. Bounded: at most
/// <see cref="MaxProcesses"/> at once (starting, running, or delivering their last output); a Start beyond that
/// fails with resource_exhausted. A process leaves the table as soon as its end event exists.
/// </summary>
internal sealed class ProcessTable
{
    /// <summary>
    /// Each process holds up to four descriptors and its buffers; 1024 keeps the agent far below the usual
    /// 1024-descriptor soft limit's multiples and a sandbox's memory, while no real workload runs that many commands.
    /// </summary>
    public const int MaxProcesses = 1024;

    private readonly Lock _gate = new();
    private readonly Dictionary<int, ManagedProcess> _byPid = [];
    private int _count;

    /// <summary>Reserves a place for a process about to start; dispose the reservation if it does not.</summary>
    public Reservation Reserve()
    {
        lock (_gate)
        {
            if (_count >= MaxProcesses)
            {
                throw new ConnectException(ConnectCode.ResourceExhausted, $"too many processes: the agent runs at most {MaxProcesses} at once");
            }
            _count++;
        }
        return new Reservation(this);
    }

    /// <summary>Lists a started process under its pid until it ends; takes over the reservation.</summary>
    public void Add(ManagedProcess process, Reservation reservation)
    {
        lock (_gate)
        {
            _byPid[process.Pid] = process;
        }
        reservation.Commit();
        _ = RemoveWhenEndedAsync(process);
    }

    private async Task RemoveWhenEndedAsync(ManagedProcess process)
    {
        await process.Ended;
        lock (_gate)
        {
            if (_byPid.TryGetValue(process.Pid, out var listed) && listed == process)
            {
                _byPid.Remove(process.Pid);
            }
            _count--;
        }
    }

    /// <summary>The process a selector names; not_found (or invalid_argument for an empty selector) otherwise.</summary>
    public ManagedProcess Find(ProcessSelector? selector)
    {
        lock (_gate)
        {
            switch (selector?.SelectorCase ?? ProcessSelector.SelectorOneofCase.None)
            {
                case ProcessSelector.SelectorOneofCase.Pid:
                    return _byPid.TryGetValue((int)selector!.Pid, out var byPid)
                        ? byPid
                        : throw new ConnectException(ConnectCode.NotFound, $"process with pid {selector.Pid} not found");
                case ProcessSelector.SelectorOneofCase.Tag:
                    // Tags need not be unique; the most recently started process with the tag is the one meant.
                    ManagedProcess? newest = null;
                    foreach (var p in _byPid.Values)
                    {
                        if (p.Tag == selector!.Tag && (newest is null || p.Sequence > newest.Sequence))
                        {
                            newest = p;
                        }
                    }
                    return newest ?? throw new ConnectException(ConnectCode.NotFound, $"process with tag '{selector!.Tag}' not found");
                default:
                    throw new ConnectException(ConnectCode.InvalidArgument, "the process selector names neither a pid nor a tag");
            }
        }
    }

    /// <summary>The processes now listed.</summary>
    public ManagedProcess[] Snapshot()
    {
        lock (_gate)
        {
            return [.. _byPid.Values];
        }
    }

    internal sealed class Reservation : IDisposable
    {
        private ProcessTable? _table;

        public Reservation(ProcessTable table)
        {
            _table = table;
        }

        public void Commit() => _table = null;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _table, null) is { } table)
            {
                lock (table._gate)
                {
                    table._count--;
                }
            }
        }
    }
}
