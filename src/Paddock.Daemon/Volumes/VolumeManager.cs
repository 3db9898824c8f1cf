using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Volumes;

/// <summary>
/// Teams' volumes: create, list, get, delete (refused while a sandbox has it mounted or a create that mounts it is
/// under way), the per-team quota, and the mounts a create asks for, resolved to host directories. Creates and
/// deletes of volumes and the resolution of a create's mounts are serialized by one gate: they are rare and short
/// (a delete and a resolve never race, so a volume cannot vanish under a starting sandbox).
/// </summary>
internal sealed class VolumeManager
{
    private readonly VolumeRecords _records;
    private readonly VolumeDisks _disks;
    private readonly DaemonOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<VolumeManager> _logger;
    private readonly SemaphoreSlim _gate = new(1, 1);

    // Creates under way per volume id (between resolving their mounts and the sandbox being live or failed).
    private readonly Dictionary<string, int> _starting = new(StringComparer.Ordinal);

    // Each sandbox's mounts (as the store has them), for GET /sandboxes/{id} and the delete's check.
    private readonly ConcurrentDictionary<string, IReadOnlyList<SandboxVolumeMount>> _mounts = new(StringComparer.Ordinal);

    public VolumeManager(VolumeRecords records, DaemonOptions options, TimeProvider time, ILogger<VolumeManager> logger)
    {
        _records = records;
        _options = options;
        _time = time;
        _logger = logger;
        _disks = new VolumeDisks(options.StateDir);
    }

    public VolumeDisks Disks => _disks;

    /// <summary>
    /// At daemon start: mounts every volume's image again (after a host restart nothing is mounted; after a daemon
    /// restart they still are), removes the directories of volumes the store does not know (a create or delete cut
    /// short by a crash) and loads the sandboxes' mounts.
    /// </summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        var volumes = await _records.ListAsync(null, cancellationToken);
        var known = volumes.Select(v => v.VolumeId).ToHashSet(StringComparer.Ordinal);
        foreach (var volume in volumes)
        {
            try
            {
                if (!await _disks.EnsureMountedAsync(volume.VolumeId, cancellationToken))
                {
                    VolumesLog.ImageMissing(_logger, volume.VolumeId, volume.Name);
                }
            }
            catch (IOException ex)
            {
                VolumesLog.MountFailed(_logger, volume.VolumeId, ex);
            }
        }
        foreach (var id in _disks.OnDisk().Where(id => !known.Contains(id)))
        {
            try
            {
                await _disks.RemoveAsync(id, cancellationToken);
                VolumesLog.LeftoverRemoved(_logger, id);
            }
            catch (IOException ex)
            {
                VolumesLog.MountFailed(_logger, id, ex);
            }
        }
        await _records.PurgeMountsAsync(cancellationToken);
        foreach (var group in (await _records.ListMountsAsync(cancellationToken)).GroupBy(m => m.SandboxId, StringComparer.Ordinal))
        {
            _mounts[group.Key] = [.. group];
        }
    }

    public async Task<VolumeRecord> CreateAsync(string teamId, string? name, int? sizeMB, CancellationToken cancellationToken)
    {
        name = VolumeMountPaths.ValidateName(name);
        var size = sizeMB is { } mb
            ? mb >= 16 && mb <= _options.MaxVolumeSizeMB ? mb * 1024L * 1024L
                : throw VolumeException.BadRequest($"sizeMB must be between 16 and {_options.MaxVolumeSizeMB}")
            : _options.VolumeSizeMB * 1024L * 1024L;
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var owned = await _records.ListAsync(teamId, cancellationToken);
            if (owned.Any(v => v.Name == name))
            {
                throw new VolumeException(StatusCodes.Status409Conflict, $"your team has a volume named '{name}' already");
            }
            if (owned.Count >= _options.MaxVolumesPerTeam)
            {
                throw new VolumeException(StatusCodes.Status429TooManyRequests,
                    $"your team has {owned.Count} volumes, the most it may have (--max-volumes {_options.MaxVolumesPerTeam}); delete one first");
            }
            var total = owned.Sum(v => v.SizeBytes) + size;
            if (total > _options.MaxVolumeTotalMB * 1024L * 1024L)
            {
                throw new VolumeException(StatusCodes.Status429TooManyRequests,
                    $"your team's volumes would hold {total / (1024 * 1024)} MiB, more than its quota of {_options.MaxVolumeTotalMB} MiB (--max-volume-total-mb)");
            }
            var volume = new VolumeRecord
            {
                VolumeId = "vol-" + SandboxIds.NewId(),
                TeamId = teamId,
                Name = name,
                Token = SandboxIds.NewToken(),
                SizeBytes = size,
                CreatedAt = _time.GetUtcNow(),
            };
            await _disks.CreateAsync(volume.VolumeId, size, cancellationToken);
            if (!await _records.InsertAsync(volume, CancellationToken.None))
            {
                await _disks.RemoveAsync(volume.VolumeId, CancellationToken.None);
                throw new VolumeException(StatusCodes.Status409Conflict, $"your team has a volume named '{name}' already");
            }
            VolumesLog.Created(_logger, volume.VolumeId, name, teamId, size);
            return volume;
        }
        finally
        {
            _gate.Release();
        }
    }

    public Task<IReadOnlyList<VolumeRecord>> ListAsync(string teamId, CancellationToken cancellationToken) =>
        _records.ListAsync(teamId, cancellationToken);

    /// <summary>The team's volume <paramref name="volumeId"/>; another team's answers exactly as an unknown one (404).</summary>
    public async Task<VolumeRecord> GetAsync(string teamId, string volumeId, CancellationToken cancellationToken) =>
        (await _records.ListAsync(teamId, cancellationToken)).FirstOrDefault(v => v.VolumeId == volumeId)
            ?? throw VolumeException.NotFound(volumeId);

    /// <summary>
    /// The volume whose content API token is <paramref name="token"/>, or null. Compared in constant time; the token
    /// is the only credential of the content API, as in E2B.
    /// </summary>
    public async Task<VolumeRecord?> AuthorizeContentAsync(string volumeId, string? token, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(token))
        {
            return null;
        }
        var volume = (await _records.ListAsync(null, cancellationToken)).FirstOrDefault(v => v.VolumeId == volumeId);
        return volume is not null && CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(volume.Token), Encoding.UTF8.GetBytes(token))
            ? volume
            : null;
    }

    /// <summary>
    /// Deletes the team's volume unless a sandbox that <paramref name="isLive"/> says is alive has it mounted, or a
    /// create that mounts it is under way (409). Its files go with it.
    /// </summary>
    public async Task DeleteAsync(string teamId, string volumeId, Func<string, bool> isLive, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var volume = await GetAsync(teamId, volumeId, cancellationToken);
            var users = _mounts.Where(kv => kv.Value.Any(m => m.VolumeId == volumeId) && isLive(kv.Key)).Select(kv => kv.Key).Order(StringComparer.Ordinal).ToList();
            if (users.Count > 0)
            {
                throw new VolumeException(StatusCodes.Status409Conflict,
                    $"volume '{volume.Name}' is mounted by sandbox {string.Join(", ", users)}; kill the sandbox first");
            }
            if (_starting.GetValueOrDefault(volumeId) > 0)
            {
                throw new VolumeException(StatusCodes.Status409Conflict, $"volume '{volume.Name}' is being mounted by a sandbox that is starting");
            }
            await _records.DeleteAsync(volumeId, cancellationToken);
            // After the record: a crash between the two leaves a directory that the next start removes.
            await _disks.RemoveAsync(volumeId, CancellationToken.None);
            VolumesLog.Deleted(_logger, volumeId, volume.Name, teamId);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Resolves a create's mounts to the team's volumes (a name the team has no volume of is a 400, whoever else has
    /// one) and holds them against deletion until the lease is disposed.
    /// </summary>
    public async Task<VolumeLease> AcquireAsync(string teamId, IReadOnlyList<VolumeMountRequest> requests, CancellationToken cancellationToken)
    {
        if (requests.Count == 0)
        {
            return VolumeLease.Empty;
        }
        await _gate.WaitAsync(cancellationToken);
        try
        {
            var owned = (await _records.ListAsync(teamId, cancellationToken)).ToDictionary(v => v.Name, StringComparer.Ordinal);
            var resolved = new List<(VolumeRecord Volume, string Path)>();
            foreach (var request in requests)
            {
                if (!owned.TryGetValue(request.Name, out var volume))
                {
                    throw VolumeException.BadRequest($"volumeMounts: your team has no volume named '{request.Name}'");
                }
                if (!await _disks.EnsureMountedAsync(volume.VolumeId, cancellationToken))
                {
                    throw new VolumeException(StatusCodes.Status500InternalServerError, $"volume '{request.Name}' has no image on this host");
                }
                resolved.Add((volume, request.Path));
            }
            foreach (var (volume, _) in resolved)
            {
                _starting[volume.VolumeId] = _starting.GetValueOrDefault(volume.VolumeId) + 1;
            }
            return new VolumeLease(this, resolved.Select(r => (r.Volume.VolumeId, r.Volume.Name, r.Path, _disks.DataOf(r.Volume.VolumeId))).ToList());
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The volumes sandbox <paramref name="sandboxId"/> mounts (empty when none).</summary>
    public IReadOnlyList<SandboxVolumeMount> MountsOf(string sandboxId) => _mounts.TryGetValue(sandboxId, out var mounts) ? mounts : [];

    internal async Task RecordAsync(string sandboxId, IReadOnlyList<SandboxVolumeMount> mounts, CancellationToken cancellationToken)
    {
        _mounts[sandboxId] = mounts;
        await _records.InsertMountsAsync(mounts, cancellationToken);
    }

    internal void Release(IEnumerable<string> volumeIds)
    {
        _gate.Wait();
        try
        {
            foreach (var id in volumeIds)
            {
                if (_starting.TryGetValue(id, out var n))
                {
                    if (n <= 1)
                    {
                        _starting.Remove(id);
                    }
                    else
                    {
                        _starting[id] = n - 1;
                    }
                }
            }
        }
        finally
        {
            _gate.Release();
        }
    }
}

/// <summary>
/// A create's resolved volumes, held against deletion while the sandbox starts; the lifecycle records them under the
/// sandbox's id before the runtime starts it (<see cref="RecordAsync"/>), so that a delete sees them from then on.
/// </summary>
internal sealed class VolumeLease : IDisposable
{
    public static readonly VolumeLease Empty = new(null, []);

    private readonly VolumeManager? _manager;
    private readonly IReadOnlyList<(string VolumeId, string Name, string Path, string HostDirectory)> _volumes;
    private int _disposed;

    internal VolumeLease(VolumeManager? manager, IReadOnlyList<(string VolumeId, string Name, string Path, string HostDirectory)> volumes)
    {
        _manager = manager;
        _volumes = volumes;
    }

    public bool IsEmpty => _volumes.Count == 0;

    /// <summary>What the runtime mounts (tier-neutral: a host directory and a path).</summary>
    public IReadOnlyList<SandboxMount> Mounts => [.. _volumes.Select(v => new SandboxMount(v.HostDirectory, v.Path))];

    public Task RecordAsync(string sandboxId, CancellationToken cancellationToken) =>
        _manager is null ? Task.CompletedTask
            : _manager.RecordAsync(sandboxId, [.. _volumes.Select(v => new SandboxVolumeMount(sandboxId, v.VolumeId, v.Name, v.Path))], cancellationToken);

    public void Dispose()
    {
        if (_manager is not null && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _manager.Release(_volumes.Select(v => v.VolumeId));
        }
    }
}
