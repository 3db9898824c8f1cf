using System.Globalization;
using System.Text;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Networking;

/// <summary>
/// A daemon's claim on its sandbox address pool, host-wide: one line in <see cref="DefaultRegistry"/> (the pool, the
/// daemon's pid and start time, its state directory), read and written under an exclusive flock(2) of that file. A line
/// whose process no longer runs is dropped by the next daemon that reads the file, so a crashed daemon leaves nothing
/// that needs cleaning.
/// </summary>
/// <remarks>
/// Two daemons on one host that hand out the same addresses reach each other's sandboxes: each puts a route to the
/// address on its own link, and the host sends the traffic through whichever link it picks. Measured in CI: two test
/// daemons whose state directories hashed to the same /22 (128 to choose from), and a command to one's sandbox was
/// answered by the other's agent ("the X-Access-Token header does not match this sandbox's access token").
/// A pool derived from the state directory (<see cref="NetworkOptions.PoolRange"/> set) therefore moves to the next
/// block of its range that overlaps no other daemon's pool, and the block it took is remembered in the network state
/// directory, so that a restart takes the same one back for the links it re-adopts. A configured pool is what the
/// operator chose: it is kept, the overlap is logged, and the addresses in other daemons' pools are left alone
/// (<see cref="Holds"/>). Within one process (tests run several runtimes in one) claims over the same state directory
/// are one daemon's (a restart in place).
/// </remarks>
internal sealed class AddressPoolClaim : IDisposable
{
    /// <summary>The registry, on a tmpfs: it goes with a reboot, as the addresses it guards do.</summary>
    public const string DefaultRegistry = "/run/paddock/address-pools";

    /// <summary>The name of the file in the network state directory that remembers a derived pool's block.</summary>
    public const string RememberedFile = "pool";

    private static readonly Lock Gate = new();

    private readonly string? _registry;
    private readonly Entry _own;
    private readonly List<IpNetwork> _others;
    private bool _disposed;

    private AddressPoolClaim(IpNetwork pool, string? registry, Entry own, List<IpNetwork> others)
    {
        Pool = pool;
        _registry = registry;
        _own = own;
        _others = others;
    }

    /// <summary>The pool this daemon hands addresses out of.</summary>
    public IpNetwork Pool { get; }

    /// <summary>
    /// Whether <paramref name="address"/> is this daemon's to hand out: false only for an address of a configured pool
    /// that is also in the pool of a daemon that claimed it first.
    /// </summary>
    public bool Holds(uint address) => _others.Count == 0 || !_others.Any(o => Overlaps(o, new IpNetwork(address, 32)));

    /// <summary>
    /// Claims <see cref="NetworkOptions.Pool"/>, or, for a derived pool another daemon's overlaps, another block of
    /// <see cref="NetworkOptions.PoolRange"/>. Throws <see cref="InvalidOperationException"/> when every block of the
    /// range overlaps another daemon's pool.
    /// </summary>
    public static AddressPoolClaim Take(NetworkOptions options, string stateDirectory, ILogger logger, string registry = DefaultRegistry)
    {
        var wanted = IpNetwork.Parse(options.Pool);
        var self = Environment.ProcessId;
        var own = new Entry(wanted, self, ProcessStat.StartTime(self) ?? 0, Path.GetFullPath(stateDirectory));
        lock (Gate)
        {
            using var file = OpenLocked(registry, out var failure);
            if (file is null)
            {
                NetworkLog.PoolClaimsUnavailable(logger, registry, failure!);
                return new AddressPoolClaim(Remembered(options, stateDirectory) ?? wanted, null, own, []);
            }
            var entries = Read(file).Where(e => e.IsAlive).ToList();
            // The same process over the same state directory is the same daemon (a runtime made again in place).
            var others = entries.Where(e => !(e.Pid == own.Pid && e.Owner == own.Owner)).Select(e => e.Pool).ToList();
            IpNetwork chosen;
            List<IpNetwork> overlapping;
            if (options.PoolRange is null)
            {
                chosen = wanted;
                overlapping = others.Where(o => Overlaps(o, wanted)).ToList();
                if (overlapping.Count > 0)
                {
                    NetworkLog.PoolShared(logger, wanted.ToString(), string.Join(", ", overlapping));
                }
            }
            else
            {
                var range = IpNetwork.Parse(options.PoolRange);
                chosen = Candidates(Remembered(options, stateDirectory), wanted, range).FirstOrDefault(c => !others.Any(o => Overlaps(o, c)), new IpNetwork(0, 0));
                if (chosen.PrefixLength == 0)
                {
                    throw new InvalidOperationException(
                        $"every block of the address range {range} overlaps the pool of another paddockd on this host: configure Network:Pool for this daemon");
                }
                overlapping = [];
                var remember = Path.Combine(stateDirectory, RememberedFile);
                Directory.CreateDirectory(stateDirectory);
                File.WriteAllText(remember, chosen + "\n");
                if (chosen != wanted)
                {
                    NetworkLog.PoolMoved(logger, wanted.ToString(), chosen.ToString(), remember);
                }
            }
            own = own with { Pool = chosen };
            entries.Add(own);
            Write(file, entries);
            return new AddressPoolClaim(chosen, registry, own, overlapping);
        }
    }

    /// <summary>The remembered block first (a restart's), then the derived one, then every other block of the range in turn.</summary>
    private static IEnumerable<IpNetwork> Candidates(IpNetwork? remembered, IpNetwork wanted, IpNetwork range)
    {
        if (remembered is { } r)
        {
            yield return r;
        }
        if (wanted.PrefixLength < range.PrefixLength || !range.Contains(IpNetwork.ToAddress(wanted.Address)))
        {
            yield return wanted;
            yield break;
        }
        var count = range.Size / wanted.Size;
        var first = (wanted.Address - range.Address) / wanted.Size;
        for (ulong i = 0; i < count; i++)
        {
            var candidate = new IpNetwork(range.Address + (uint)((first + i) % count * wanted.Size), wanted.PrefixLength);
            if (candidate != remembered)
            {
                yield return candidate;
            }
        }
    }

    private static IpNetwork? Remembered(NetworkOptions options, string stateDirectory)
    {
        if (options.PoolRange is null)
        {
            return null;
        }
        string text;
        try
        {
            text = File.ReadAllText(Path.Combine(stateDirectory, RememberedFile)).Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return IpNetwork.TryParse(text, out var pool) && pool.PrefixLength == IpNetwork.Parse(options.Pool).PrefixLength
            && IpNetwork.Parse(options.PoolRange).Contains(IpNetwork.ToAddress(pool.Address)) ? pool : null;
    }

    internal static bool Overlaps(IpNetwork a, IpNetwork b)
    {
        var prefix = Math.Min(a.PrefixLength, b.PrefixLength);
        var mask = prefix == 0 ? 0u : uint.MaxValue << (32 - prefix);
        return (a.Address & mask) == (b.Address & mask);
    }

    /// <summary>
    /// The registry, open and exclusively locked: .NET's own open takes flock(2) LOCK_EX|LOCK_NB for
    /// <see cref="FileShare.None"/> and fails while another holds it, so the open is retried, for at most 10 s.
    /// </summary>
    private static FileStream? OpenLocked(string registry, out string? failure)
    {
        failure = null;
        try
        {
            Directory.CreateDirectory(Path.GetDirectoryName(registry)!);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            failure = ex.Message;
            return null;
        }
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                var file = new FileStream(registry, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
                // Explicitly as well, in case .NET's locking is switched off (DOTNET_SYSTEM_IO_DISABLEFILELOCKING).
                if (Files.TryLockExclusive(file.SafeFileHandle) == 0)
                {
                    return file;
                }
                file.Dispose();
            }
            catch (UnauthorizedAccessException ex)
            {
                failure = ex.Message;
                return null;
            }
            catch (IOException ex) when (attempt >= 1000)
            {
                failure = ex.Message;
                return null;
            }
            catch (IOException)
            {
                // held by another daemon right now
            }
            if (attempt >= 1000)
            {
                failure = "another process held its lock for 10 s";
                return null;
            }
            Thread.Sleep(10);
        }
    }

    private static List<Entry> Read(FileStream file)
    {
        file.Position = 0;
        using var reader = new StreamReader(file, Encoding.UTF8, leaveOpen: true);
        var entries = new List<Entry>();
        while (reader.ReadLine() is { } line)
        {
            if (Entry.TryParse(line) is { } entry)
            {
                entries.Add(entry);
            }
        }
        return entries;
    }

    private static void Write(FileStream file, List<Entry> entries)
    {
        var text = new StringBuilder("# paddockd address pools: pool pid start-time state-directory (one line per daemon; lines of ended processes are dropped)\n");
        foreach (var e in entries)
        {
            text.Append(CultureInfo.InvariantCulture, $"{e.Pool} {e.Pid} {e.StartTime} {e.Owner}\n");
        }
        var bytes = Encoding.UTF8.GetBytes(text.ToString());
        file.SetLength(0);
        file.Position = 0;
        file.Write(bytes);
        file.Flush(flushToDisk: false);
    }

    /// <summary>Takes this daemon's line out of the registry.</summary>
    public void Dispose()
    {
        if (_disposed || _registry is null)
        {
            return;
        }
        _disposed = true;
        lock (Gate)
        {
            using var file = OpenLocked(_registry, out _);
            if (file is null)
            {
                return; // the line is dropped by the next daemon's read once this process ends
            }
            var entries = Read(file).Where(e => e.IsAlive).ToList();
            var index = entries.IndexOf(_own);
            if (index >= 0)
            {
                entries.RemoveAt(index);
            }
            Write(file, entries);
        }
    }

    private sealed record Entry(IpNetwork Pool, int Pid, ulong StartTime, string Owner)
    {
        public bool IsAlive => ProcessStat.IsRunning(Pid, StartTime);

        public static Entry? TryParse(string line)
        {
            var parts = line.Split(' ', 4);
            return parts.Length == 4 && !line.StartsWith('#') && IpNetwork.TryParse(parts[0], out var pool)
                && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
                && ulong.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var started)
                ? new Entry(pool, pid, started, parts[3]) : null;
        }
    }
}
