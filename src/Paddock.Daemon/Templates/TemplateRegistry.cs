using System.Text.RegularExpressions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Templates;

/// <summary>Why a template delete did not happen, or that it did.</summary>
internal enum TemplateDeleteStatus
{
    Deleted,

    /// <summary>No template with this id or name that the team may see.</summary>
    NotFound,

    /// <summary>A public built-in (<c>base</c>): the host's, not a team's to delete.</summary>
    Builtin,

    /// <summary>Another template is made on top of its layers (<see cref="TemplateDeleteOutcome.Blockers"/>).</summary>
    HasDependents,

    /// <summary>Sandboxes run from it (<see cref="TemplateDeleteOutcome.Blockers"/>).</summary>
    InUse,
}

/// <summary>What a delete did; <see cref="Blockers"/> names the templates or sandboxes that kept it.</summary>
internal sealed record TemplateDeleteOutcome(TemplateDeleteStatus Status, string TemplateId, IReadOnlyList<string> Blockers);

/// <summary>A snapshot name that cannot be used; the API's 400.</summary>
internal sealed class TemplateNameException(string message) : Exception(message);

/// <summary>
/// The templates sandboxes start from, by team: the host's built-ins (found through the host's
/// <see cref="ITemplateLookup"/>, <c>base</c> built from its recipe, and recorded as public on first use) and the
/// templates teams made (filesystem snapshots), recorded in the <c>templates</c> table. A template is an ordered list
/// of read-only layer directories; a snapshot adds one layer, under <see cref="LayersDirectory"/>, on top of the
/// layers of its sandbox's template, so sandboxes and templates share layers instead of copies.
/// </summary>
internal sealed partial class TemplateRegistry
{
    // E2B names are "alias" or "team/alias:tag"; we keep them to a safe subset that can never be read as a path.
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")]
    private static partial Regex ValidName();

    private readonly ITemplateRecords _records;
    private readonly ITemplateLookup _builtins;
    private readonly ISandboxRuntime _runtime;
    private readonly ISandboxStore _sandboxes;
    private readonly TimeProvider _time;
    private readonly ILogger<TemplateRegistry> _logger;
    private readonly IdleFreezer? _freezer;
    private readonly ITemplateReplicas _replicas;
    private readonly StartImages? _startImages;

    // Deletes and snapshots one at a time: a snapshot reads its parent's layers while a delete may remove them.
    private readonly SemaphoreSlim _changes = new(1, 1);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (string TeamId, TemplateRecord Record)> _stages = new(StringComparer.Ordinal);

    public TemplateRegistry(ITemplateRecords records, ITemplateLookup builtins, ISandboxRuntime runtime, ISandboxStore sandboxes,
        DaemonOptions options, TimeProvider time, ILogger<TemplateRegistry> logger, IdleFreezer? freezer = null, ITemplateReplicas? replicas = null,
        StartImages? startImages = null)
    {
        _startImages = startImages;
        _freezer = freezer;
        _replicas = replicas ?? new NoTemplateReplicas();
        _records = records;
        _builtins = builtins;
        _runtime = runtime;
        _sandboxes = sandboxes;
        _time = time;
        _logger = logger;
        LayersDirectory = Path.Combine(options.StateDir, "layers");
    }

    /// <summary>Whether <paramref name="name"/> can name a template.</summary>
    public static bool IsValidName(string name) => ValidName().IsMatch(name) && !name.Contains("..", StringComparison.Ordinal);

    /// <summary>Where snapshot layers live, one directory per template id.</summary>
    public string LayersDirectory { get; }

    /// <summary>The template a create names (its id or one of its names), as <paramref name="teamId"/> may see it; null when none.</summary>
    public async ValueTask<SandboxTemplate?> FindAsync(string templateIdOrName, string teamId, CancellationToken cancellationToken)
    {
        var record = await ResolveAsync(templateIdOrName, teamId, cancellationToken);
        if (record is null)
        {
            return null;
        }
        // A stage or a built-in is this host's own; a team's template may have been made on another node (cluster).
        var layers = record.Kind == TemplateKind.Builtin || _stages.ContainsKey(record.TemplateId)
            ? record.Layers
            : await _replicas.EnsureLocalAsync(record, LayersDirectory, cancellationToken);
        return new SandboxTemplate(record.TemplateId, record.TemplateId == templateIdOrName ? null : templateIdOrName, layers, record.DefaultUser, record.EnvVars, record.Workdir, record.Isolation)
            {
                MemoryImage = record.MemoryImage,
                StartCmd = record.StartCmd,
                ReadyCmd = record.ReadyCmd,
            };
    }

    /// <summary>
    /// Makes <paramref name="layers"/> startable as template <paramref name="stageId"/> for <paramref name="teamId"/>
    /// only, unlisted and in memory: a build step's sandbox starts from the layers of the steps before it.
    /// </summary>
    public void AddStage(string stageId, string teamId, IReadOnlyList<string> layers, string? defaultUser) =>
        _stages[stageId] = (teamId, new TemplateRecord
        {
            TemplateId = stageId,
            TeamId = teamId,
            Kind = TemplateKind.Build,
            Layers = layers,
            CreatedAt = _time.GetUtcNow(),
            DefaultUser = defaultUser,
        });

    public void RemoveStage(string stageId) => _stages.TryRemove(stageId, out _);

    /// <summary>Records a finished build as template <see cref="TemplateRecord.TemplateId"/> (a rebuild replaces the record, the layers stay cached).</summary>
    public async Task RegisterBuildAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        await _changes.WaitAsync(cancellationToken);
        try
        {
            foreach (var name in record.Names)
            {
                // A name belongs to one template of the team: the newest build of that name takes it.
                foreach (var named in (await _records.ListAsync(cancellationToken)).Where(t => t.TeamId == record.TeamId && t.TemplateId != record.TemplateId && t.Names.Contains(name, StringComparer.Ordinal)))
                {
                    await _records.UpsertAsync(named with { Names = named.Names.Where(n => n != name).ToList() }, CancellationToken.None);
                }
            }
            // Published before the record: a record the other nodes can see always has its layers' digests.
            await _replicas.PublishAsync(record, LayersDirectory, CancellationToken.None);
            await _records.UpsertAsync(record, CancellationToken.None);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>
    /// A team's own templates first (by id, then by name), then public ones, then the host's built-ins (recorded
    /// on first use, so they are listed with their size from then on).
    /// </summary>
    public async Task<TemplateRecord?> ResolveAsync(string templateIdOrName, string teamId, CancellationToken cancellationToken)
    {
        if (_stages.TryGetValue(templateIdOrName, out var stage) && stage.TeamId == teamId)
        {
            return stage.Record;
        }
        var visible = (await _records.ListAsync(cancellationToken)).Where(t => t.IsVisibleTo(teamId) && t.Kind != TemplateKind.Builtin).ToList();
        var registered = visible.FirstOrDefault(t => t.TemplateId == templateIdOrName)
            ?? visible.Where(t => t.Names.Contains(templateIdOrName, StringComparer.Ordinal)).OrderByDescending(t => t.TeamId == teamId).FirstOrDefault();
        if (registered is not null)
        {
            return registered;
        }
        var builtin = await _builtins.FindAsync(templateIdOrName, cancellationToken);
        return builtin is null ? null : await RecordBuiltinAsync(builtin, cancellationToken);
    }

    private async Task<TemplateRecord> RecordBuiltinAsync(SandboxTemplate builtin, CancellationToken cancellationToken)
    {
        var existing = await _records.GetAsync(builtin.TemplateId, cancellationToken);
        var names = existing?.Names ?? [];
        if (builtin.Alias is { } alias && !names.Contains(alias, StringComparer.Ordinal))
        {
            names = [.. names, alias];
        }
        if (existing is not null && existing.Layers.SequenceEqual(builtin.Layers, StringComparer.Ordinal) && existing.Names.Count == names.Count
            && existing.StartCmd == builtin.StartCmd && existing.ReadyCmd == builtin.ReadyCmd)
        {
            return existing;
        }
        // Measured once per version of the built-in (a walk of its whole rootfs, about 0.1 s for base).
        var record = new TemplateRecord
        {
            TemplateId = builtin.TemplateId,
            Names = names.Count == 0 ? [builtin.TemplateId] : names,
            Kind = TemplateKind.Builtin,
            Layers = builtin.Layers,
            SizeBytes = await Task.Run(() => builtin.Layers.Sum(layer => Files.AllocatedBytesBeneath(layer)), cancellationToken),
            CreatedAt = existing?.CreatedAt ?? _time.GetUtcNow(),
            DefaultUser = builtin.DefaultUser,
            StartCmd = builtin.StartCmd,
            ReadyCmd = builtin.ReadyCmd,
            Public = true,
        };
        await _records.UpsertAsync(record, cancellationToken);
        return record;
    }

    /// <summary>The record of a template by its id, whoever owns it (for sandboxes that run from it).</summary>
    public Task<TemplateRecord?> GetAsync(string templateId, CancellationToken cancellationToken) => _records.GetAsync(templateId, cancellationToken);

    /// <summary>Every template <paramref name="teamId"/> may see, oldest first.</summary>
    public async Task<IReadOnlyList<TemplateRecord>> ListAsync(string teamId, CancellationToken cancellationToken) =>
        (await _records.ListAsync(cancellationToken)).Where(t => t.IsVisibleTo(teamId)).ToList();

    /// <summary>
    /// Saves the running sandbox's filesystem changes as a new template of <paramref name="teamId"/>: a new layer on
    /// top of the layers of the sandbox's template. The sandbox keeps running. When <paramref name="name"/> is given
    /// and another of the team's templates has it, the name moves to the new one (E2B: a new build of that name).
    /// </summary>
    public async Task<TemplateRecord> SnapshotAsync(SandboxRecord sandbox, string teamId, string? name, CancellationToken cancellationToken)
    {
        if (name is not null && !IsValidName(name))
        {
            throw new TemplateNameException($"invalid snapshot name '{name}': use 1-128 letters, digits and '_', '.', ':', '/', '-', starting with a letter or digit");
        }
        await _changes.WaitAsync(cancellationToken);
        try
        {
            var all = await _records.ListAsync(cancellationToken);
            if (name is not null && all.Any(t => t.Kind == TemplateKind.Builtin && (t.TemplateId == name || t.Names.Contains(name, StringComparer.Ordinal))))
            {
                throw new TemplateNameException($"'{name}' is the name of a built-in template; choose another name");
            }
            // The sandbox's own template, whoever may see it now: the snapshot stands on exactly those layers.
            var parent = all.FirstOrDefault(t => t.TemplateId == sandbox.TemplateId)
                ?? await ResolveAsync(sandbox.TemplateId, teamId, cancellationToken)
                ?? throw new TemplateNotFoundException(sandbox.TemplateId);

            var id = SandboxIds.NewId();
            Directory.CreateDirectory(LayersDirectory);
            var layer = Path.Combine(LayersDirectory, id);
            long size;
            // Awake: the snapshot pauses the container itself (runc pause), which fails on one the idle freezer froze.
            var memory = MemoryImages.PathFor(layer);
            using (_freezer is null ? default : await _freezer.HoldAwakeAsync(sandbox.SandboxId, cancellationToken))
            {
                size = await _runtime.SnapshotFilesystemAsync(sandbox.SandboxId, layer, cancellationToken);
                // Where the tier can (gVisor), the snapshot keeps memory too: a fork's capture, kept. Its files are the
                // capture's own copy of the writable layer (one instant with the memory); the layer above serves a
                // sandbox started from the template on a tier that cannot restore memory (files only).
                try
                {
                    size += await _runtime.SnapshotMemoryAsync(sandbox.SandboxId, memory, cancellationToken);
                    MemoryImages.WriteAgentToken(memory, sandbox.EnvdAccessToken);
                }
                catch (MemorySnapshotUnavailableException ex)
                {
                    TemplatesLog.SnapshotWithoutMemory(_logger, sandbox.SandboxId, ex.Message);
                }
                catch
                {
                    RemoveLayer(layer);
                    RemoveLayer(memory);
                    throw;
                }
            }
            try
            {
                if (name is not null)
                {
                    foreach (var named in all.Where(t => t.TeamId == teamId && t.Names.Contains(name, StringComparer.Ordinal)))
                    {
                        await _records.UpsertAsync(named with { Names = named.Names.Where(n => n != name).ToList() }, CancellationToken.None);
                    }
                }
                var record = new TemplateRecord
                {
                    TemplateId = id,
                    TeamId = teamId,
                    Names = name is null ? [] : [name],
                    Kind = TemplateKind.Snapshot,
                    Layers = [layer, .. parent.Layers],
                    OwnLayer = layer,
                    SizeBytes = size,
                    CreatedAt = _time.GetUtcNow(),
                    ParentId = parent.TemplateId,
                    SourceSandboxId = sandbox.SandboxId,
                    DefaultUser = parent.DefaultUser,
                    EnvVars = parent.EnvVars,
                    Workdir = parent.Workdir,
                    StartCmd = parent.StartCmd,
                    ReadyCmd = parent.ReadyCmd,
                    // Its sandboxes run where the state was taken (a later memory snapshot can only restore there).
                    Isolation = sandbox.RuntimeName,
                };
                // Published before the record (a failure here removes the layer, and no record names it).
                await _replicas.PublishAsync(record, LayersDirectory, CancellationToken.None);
                await _records.UpsertAsync(record, CancellationToken.None);
                TemplatesLog.SnapshotRegistered(_logger, id, sandbox.SandboxId, parent.TemplateId, size);
                return record;
            }
            catch
            {
                RemoveLayer(layer);
                RemoveLayer(memory);
                throw;
            }
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>
    /// Deletes a team's template and its own layer, unless sandboxes run from it or other templates stand on it.
    /// </summary>
    public async Task<TemplateDeleteOutcome> DeleteAsync(string templateIdOrName, string teamId, CancellationToken cancellationToken)
    {
        await _changes.WaitAsync(cancellationToken);
        try
        {
            var all = await _records.ListAsync(cancellationToken);
            var target = all.FirstOrDefault(t => t.TemplateId == templateIdOrName && t.IsVisibleTo(teamId))
                ?? all.FirstOrDefault(t => t.TeamId == teamId && t.Names.Contains(templateIdOrName, StringComparer.Ordinal));
            if (target is null)
            {
                return new(TemplateDeleteStatus.NotFound, templateIdOrName, []);
            }
            if (target.Kind == TemplateKind.Builtin || target.TeamId != teamId)
            {
                return new(TemplateDeleteStatus.Builtin, target.TemplateId, []);
            }
            var dependents = all.Where(t => t.ParentId == target.TemplateId).Select(t => t.TemplateId).ToList();
            if (dependents.Count > 0)
            {
                return new(TemplateDeleteStatus.HasDependents, target.TemplateId, dependents);
            }
            // Starting ones too: they are recorded before the runtime mounts the layers.
            var users = (await _sandboxes.ListAsync([SandboxState.Starting, SandboxState.Running, SandboxState.Paused], cancellationToken))
                .Where(s => s.TemplateId == target.TemplateId).Select(s => s.SandboxId).ToList();
            if (users.Count > 0)
            {
                return new(TemplateDeleteStatus.InUse, target.TemplateId, users);
            }
            await _records.DeleteAsync(target.TemplateId, CancellationToken.None);
            if (target.OwnLayer is { } layer)
            {
                RemoveLayer(layer);
                RemoveLayer(MemoryImages.PathFor(layer));
                // This host's copy when the template was made on another node (cluster mode: named alike, elsewhere).
                RemoveCopy(Path.GetFileName(layer.TrimEnd('/')));
            }
            _startImages?.RemoveAll(target.TemplateId);
            // The other nodes' copies (cluster mode); one that is down removes its own at its next start (SweepLeftoversAsync).
            await _replicas.RemoveEverywhereAsync(target, CancellationToken.None);
            TemplatesLog.TemplateDeleted(_logger, target.TemplateId);
            return new(TemplateDeleteStatus.Deleted, target.TemplateId, []);
        }
        finally
        {
            _changes.Release();
        }
    }

    /// <summary>
    /// At start, before anything builds or snapshots: removes from <see cref="LayersDirectory"/> what a daemon stopped
    /// half-way left behind and no template names (<see cref="LeftoversIn"/>). Returns how many it removed.
    /// </summary>
    public async Task<int> SweepLeftoversAsync(CancellationToken cancellationToken)
    {
        var records = await _records.ListAsync(cancellationToken);
        _startImages?.Sweep(records);
        var leftovers = LeftoversIn(LayersDirectory, records);
        foreach (var leftover in leftovers)
        {
            TemplatesLog.LeftoverRemoved(_logger, leftover);
            RemoveLayer(leftover);
        }
        return leftovers.Count;
    }

    /// <summary>
    /// The directories of <paramref name="layersDirectory"/> that no template names and nothing will finish: staging
    /// directories (a name starting with '.': a build's, an import's, a scratch base's), a snapshot's or an import's
    /// layer (an id's name) whose record was never written, and a memory image (<c>{layer}.memory</c>) whose template
    /// is not there (a crash between the capture and the record, issue 15). Build-cache layers (<c>cache-…</c>) and
    /// the scratch bases are caches named by what they hold, and stay.
    /// </summary>
    internal static IReadOnlyList<string> LeftoversIn(string layersDirectory, IReadOnlyList<TemplateRecord> records)
    {
        if (!Directory.Exists(layersDirectory))
        {
            return [];
        }
        // By directory name, not path: layer names are unique ids, and a state directory reached by another path
        // (a symbolic link, a trailing slash) must not make a template's own layer look unnamed.
        // A memory image belongs to the template whose own layer it sits next to (TemplateRecord.MemoryImage).
        var named = new HashSet<string>(StringComparer.Ordinal);
        var owned = new HashSet<string>(StringComparer.Ordinal);
        foreach (var record in records)
        {
            named.UnionWith(record.Layers.Select(l => Path.GetFileName(l.TrimEnd('/'))));
            if (record.OwnLayer is { } own)
            {
                owned.Add(Path.GetFileName(own.TrimEnd('/')));
            }
        }
        named.UnionWith(owned);
        var leftovers = new List<string>();
        foreach (var path in Directory.EnumerateDirectories(layersDirectory))
        {
            var name = Path.GetFileName(path);
            var isLeftover = name.StartsWith('.')
                || (name.EndsWith(MemoryImages.Suffix, StringComparison.Ordinal) && !owned.Contains(name[..^MemoryImages.Suffix.Length]))
                || (name.Length == SandboxIds.Length && SandboxIds.IsWellFormed(name) && !named.Contains(name));
            if (isLeftover)
            {
                leftovers.Add(path);
            }
        }
        return leftovers;
    }

    /// <summary>
    /// Removes this host's copy of layer <paramref name="name"/> (and its memory image) unless a template still names
    /// it: another node deleted its template (cluster mode). False when it was not removed (kept, or not here).
    /// </summary>
    public async Task<bool> RemoveCopyAsync(string name, CancellationToken cancellationToken)
    {
        if (!SandboxIds.IsWellFormed(name) || name.Length != SandboxIds.Length)
        {
            // Only a template's own layer (an id) is removed this way; build cache layers stay cached, as on one node.
            return false;
        }
        await _changes.WaitAsync(cancellationToken);
        try
        {
            var records = await _records.ListAsync(cancellationToken);
            if (records.Any(r => r.Layers.Any(l => Path.GetFileName(l.TrimEnd('/')) == name)))
            {
                return false;
            }
            return RemoveCopy(name);
        }
        finally
        {
            _changes.Release();
        }
    }

    private bool RemoveCopy(string name)
    {
        var copy = Path.Combine(LayersDirectory, name);
        var existed = Directory.Exists(copy);
        RemoveLayer(copy);
        RemoveLayer(MemoryImages.PathFor(copy));
        return existed;
    }

    private void RemoveLayer(string layer)
    {
        try
        {
            if (Directory.Exists(layer))
            {
                Directory.Delete(layer, recursive: true);
            }
        }
        catch (IOException ex)
        {
            // Unreferenced now; it only costs disk. Said in the log so an operator can remove it.
            TemplatesLog.LayerRemovalFailed(_logger, layer, ex);
        }
    }
}
