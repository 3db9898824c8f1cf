using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Start images (issue 15, point 5): a template with a start command, on a tier that restores memory (gVisor), is
/// started once in a sandbox of its own, checkpointed with its memory after its ready check, and its later creates
/// are restores of that capture instead of runs of the command again, as E2B's templates are (E2B runs the start
/// command at build time and snapshots the VM). The capture is the same one a memory snapshot keeps
/// (<see cref="ISandboxRuntime.SnapshotMemoryAsync"/>, restored by <see cref="SandboxManager"/> as a memory snapshot's
/// is, with the new sandbox's token and variables through envd's <c>/init</c>).
/// </summary>
/// <remarks>
/// <para>Made on first demand, not at build time: the first create of a template version on such a tier starts as
/// before (start command, ready check in the client's sandbox) and asks for the image, which is made in the
/// background in a separate sandbox that no client sees (no record, no deadline: a daemon stopped meanwhile leaves a
/// stray that recovery destroys, as it destroys a warm pool's). The start command there runs with the template's
/// environment only, as in a warm pool member (and in E2B, where it runs at build time). A restored process keeps
/// the environment it started with, so only creates without variables of their own restore the image (the manager
/// decides; the others run the start command with their variables, as before, and only ask for the image).</para>
/// <para>One image per template version and size: the key hashes the template's id, its layers (a rebuild changes
/// them), its start command, ready check, user, working directory and environment, and the sandbox's CPU, memory and
/// disk limits, because a restore comes back with the limits of the capture (a create of another size takes the
/// slow path and asks for an image of its own). Images live in <c>{StateDir}/start-images/{template}/{key}</c>; one is
/// written under a temporary name and renamed when complete, so a daemon stopped half-way leaves only a temporary
/// directory, which the next start removes (<see cref="Sweep"/>). A new image of a template removes its other
/// versions; deleting the template removes them all.</para>
/// <para>One image is made at a time, host-wide (each is a whole sandbox start plus the start command: on the
/// 2-core build machines a second one at once only slows the creates that run meanwhile); a failed attempt is logged
/// and retried for that key only after a back-off (30 s, doubling to 30 min), so creates never wait for it.</para>
/// </remarks>
internal sealed class StartImages : IAsyncDisposable
{
    private const string TemporaryPrefix = ".tmp-";
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromMinutes(30);

    private readonly ISandboxRuntime _runtime;
    private readonly ILogger<StartImages> _logger;
    private readonly Lazy<TemplateStartup> _startup;
    private readonly TimeSpan _startTimeout;
    private readonly bool _enabled;
    private readonly SemaphoreSlim _making = new(1, 1);
    private readonly CancellationTokenSource _stopping = new();
    // Per key: the attempt under way (single flight) or the failures so far and when the next may start.
    private readonly ConcurrentDictionary<string, Attempt> _attempts = new(StringComparer.Ordinal);
    // Images being restored from right now, with how many restores: a removal leaves them alone.
    private readonly ConcurrentDictionary<string, int> _inUse = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<Task, byte> _tasks = new();

    public StartImages(ISandboxRuntime runtime, DaemonOptions options, ILogger<StartImages> logger, IServiceProvider services)
    {
        _runtime = runtime;
        _logger = logger;
        _startTimeout = options.StartTimeout;
        _enabled = options.StartImages;
        // Lazily: the start command runs through the proxy's client, which depends on the sandbox manager, which depends on this.
        _startup = new Lazy<TemplateStartup>(() => (TemplateStartup)services.GetService(typeof(TemplateStartup))!);
        Root = Path.Combine(options.StateDir, "start-images");
    }

    /// <summary>Where images live, one directory per template.</summary>
    public string Root { get; }

    /// <summary>
    /// The complete image for a create of <paramref name="template"/> with <paramref name="limits"/> on
    /// <paramref name="isolation"/>, held against removal until the lease is disposed; null when there is none yet
    /// (then one is made in the background unless an attempt is under way or backing off). The caller has checked
    /// that the tier restores memory; a template without a start command never has one.
    /// </summary>
    /// <param name="restore">False: the caller will not restore it (a create with variables of its own); only ask for it.</param>
    public StartImageLease? Find(SandboxTemplate template, ResourceLimits limits, string isolation, bool restore = true)
    {
        if (!_enabled || template.StartCmd is not { Length: > 0 } || _stopping.IsCancellationRequested)
        {
            return null;
        }
        var path = PathFor(template, limits, isolation);
        if (!restore)
        {
            if (!Directory.Exists(path))
            {
                Request(template, limits, isolation, path);
            }
            return null;
        }
        // Held before the look, so that no removal comes between the look and the restore.
        _inUse.AddOrUpdate(path, 1, (_, n) => n + 1);
        if (Directory.Exists(path))
        {
            return new StartImageLease(path, this);
        }
        Release(path);
        Request(template, limits, isolation, path);
        return null;
    }

    /// <summary>The complete images of a template now (for tests and the operator).</summary>
    public IReadOnlyList<string> ImagesOf(string templateId)
    {
        var directory = Path.Combine(Root, DirectoryName(templateId));
        return Directory.Exists(directory)
            ? [.. Directory.EnumerateDirectories(directory).Where(d => !Path.GetFileName(d).StartsWith(TemporaryPrefix, StringComparison.Ordinal))]
            : [];
    }

    /// <summary>Removes every image of a template (deleted): none is restored from again.</summary>
    public void RemoveAll(string templateId)
    {
        var directory = Path.Combine(Root, DirectoryName(templateId));
        // A template made again under the same id and layers must get a new image, not the memory of a made one.
        foreach (var key in _attempts.Keys.Where(k => k.StartsWith(directory + "/", StringComparison.Ordinal)))
        {
            _attempts.TryRemove(key, out _);
        }
        if (!Directory.Exists(directory))
        {
            return;
        }
        foreach (var image in Directory.EnumerateDirectories(directory))
        {
            RemoveUnlessInUse(image);
        }
        TryDelete(directory, onlyIfEmpty: true);
    }

    /// <summary>
    /// At the daemon's start: removes temporary directories (an image a stopped daemon did not finish) and the images
    /// of templates no record names any more. Returns how many directories it removed.
    /// </summary>
    public int Sweep(IReadOnlyList<TemplateRecord> records)
    {
        if (!Directory.Exists(Root))
        {
            return 0;
        }
        var known = records.Select(r => DirectoryName(r.TemplateId)).ToHashSet(StringComparer.Ordinal);
        var removed = 0;
        foreach (var directory in Directory.EnumerateDirectories(Root))
        {
            if (!known.Contains(Path.GetFileName(directory)))
            {
                TryDelete(directory, onlyIfEmpty: false);
                removed++;
                continue;
            }
            foreach (var leftover in Directory.EnumerateDirectories(directory).Where(d => Path.GetFileName(d).StartsWith(TemporaryPrefix, StringComparison.Ordinal)))
            {
                TryDelete(leftover, onlyIfEmpty: false);
                removed++;
            }
        }
        return removed;
    }

    internal void Release(string path)
    {
        while (_inUse.TryGetValue(path, out var n))
        {
            if (n <= 1 ? _inUse.TryRemove(new KeyValuePair<string, int>(path, n)) : _inUse.TryUpdate(path, n - 1, n))
            {
                return;
            }
        }
    }

    private void Request(SandboxTemplate template, ResourceLimits limits, string isolation, string path)
    {
        var now = Stopwatch.GetTimestamp();
        while (true)
        {
            var current = _attempts.GetValueOrDefault(path);
            // A made image (no failures) whose directory is gone (removed by hand) may be made again at once.
            if (current is { Running: true } || (current is { Failures: > 0 } && now < current.RetryAt))
            {
                return;
            }
            var next = new Attempt(true, current?.Failures ?? 0, 0);
            var won = current is null ? _attempts.TryAdd(path, next) : _attempts.TryUpdate(path, next, current);
            if (won)
            {
                break;
            }
        }
        var task = MakeAsync(template, limits, isolation, path);
        _tasks.TryAdd(task, 0);
        _ = task.ContinueWith(t => _tasks.TryRemove(t, out _), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    private async Task MakeAsync(SandboxTemplate template, ResourceLimits limits, string isolation, string path)
    {
        await Task.Yield();
        var stopping = _stopping.Token;
        var clock = Stopwatch.StartNew();
        var sandboxId = SandboxIds.NewId();
        var temporary = Path.Combine(Path.GetDirectoryName(path)!, TemporaryPrefix + Path.GetFileName(path) + "-" + Guid.NewGuid().ToString("N")[..8]);
        var started = false;
        try
        {
            await _making.WaitAsync(stopping);
            try
            {
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(stopping);
                timeout.CancelAfter(_startTimeout + TemplateStartup.ReadyTimeout + TimeSpan.FromMinutes(1));
                var token = SandboxIds.NewToken();
                var spec = new SandboxSpec
                {
                    SandboxId = sandboxId,
                    TemplateLayers = template.Layers,
                    Limits = limits,
                    EnvVars = template.EnvVars ?? new Dictionary<string, string>(),
                    AgentAccessToken = token,
                    DefaultUser = template.DefaultUser,
                    DefaultWorkdir = template.Workdir,
                    AllowInternetAccess = true,
                    Isolation = isolation,
                };
                started = true;
                // At the background CPU priority, as a warm pool member starts: the creates running meanwhile come first.
                await _runtime.SetCpuPriorityAsync(sandboxId, background: true, timeout.Token);
                await _runtime.StartAsync(spec, timeout.Token);
                await _startup.Value.PrepareAsync(sandboxId, template, token, timeout.Token);
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                await _runtime.SnapshotMemoryAsync(sandboxId, temporary, timeout.Token);
                // The restored agent requires the maker's token until /init gives it the new sandbox's (MemoryImages).
                MemoryImages.WriteAgentToken(temporary, token);
                // Complete: only now does it have the name a create looks for.
                Directory.Move(temporary, path);
            }
            finally
            {
                _making.Release();
            }
            _attempts[path] = new Attempt(false, 0, long.MaxValue);
            TemplatesLog.StartImageMade(_logger, template.TemplateId, path, clock.ElapsedMilliseconds);
            // The template's other versions (a rebuild, or a change of its start command) are never asked for again.
            foreach (var other in Directory.EnumerateDirectories(Path.GetDirectoryName(path)!))
            {
                if (other != path && !Path.GetFileName(other).StartsWith(TemporaryPrefix, StringComparison.Ordinal) && !SameVersion(other, path))
                {
                    RemoveUnlessInUse(other);
                }
            }
        }
        catch (Exception ex)
        {
            TryDelete(temporary, onlyIfEmpty: false);
            if (stopping.IsCancellationRequested)
            {
                _attempts.TryRemove(path, out _);
            }
            else
            {
                var failures = (_attempts.GetValueOrDefault(path)?.Failures ?? 0) + 1;
                var delay = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, FirstBackoff.Ticks << Math.Min(failures - 1, 10)));
                _attempts[path] = new Attempt(false, failures, Stopwatch.GetTimestamp() + (long)(delay.TotalSeconds * Stopwatch.Frequency));
                TemplatesLog.StartImageFailed(_logger, template.TemplateId, (long)delay.TotalSeconds, ex);
            }
        }
        finally
        {
            if (started)
            {
                try
                {
                    using var destroyTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                    await _runtime.DestroyAsync(sandboxId, destroyTimeout.Token);
                }
                catch (Exception ex)
                {
                    // Left for the next start's recovery, which destroys sandboxes that have no record.
                    TemplatesLog.StartImageSandboxLeft(_logger, sandboxId, ex);
                }
            }
        }
    }

    // Images of one template version at other sizes share the key's first half (see PathFor).
    private static bool SameVersion(string a, string b) =>
        Path.GetFileName(a).AsSpan(0, Math.Min(16, Path.GetFileName(a).Length)).SequenceEqual(Path.GetFileName(b).AsSpan(0, 16));

    private void RemoveUnlessInUse(string image)
    {
        if (!_inUse.ContainsKey(image))
        {
            TryDelete(image, onlyIfEmpty: false);
        }
    }

    private void TryDelete(string directory, bool onlyIfEmpty)
    {
        try
        {
            if (Directory.Exists(directory) && (!onlyIfEmpty || !Directory.EnumerateFileSystemEntries(directory).Any()))
            {
                Directory.Delete(directory, recursive: !onlyIfEmpty);
                TemplatesLog.StartImageRemoved(_logger, directory);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            TemplatesLog.LayerRemovalFailed(_logger, directory, new IOException(ex.Message, ex));
        }
    }

    /// <summary>
    /// <c>{Root}/{template}/{version}{size}</c>: 16 hex digits of the template version's hash (id, layers, start
    /// command, ready check, user, working directory, environment; the tier) and 8 of the limits'.
    /// </summary>
    private string PathFor(SandboxTemplate template, ResourceLimits limits, string isolation)
    {
        var version = new StringBuilder()
            .Append(template.TemplateId).Append('\n')
            .AppendJoin('\n', template.Layers).Append('\n')
            .Append(template.StartCmd).Append('\n')
            .Append(template.ReadyCmd).Append('\n')
            .Append(template.DefaultUser).Append('\n')
            .Append(template.Workdir).Append('\n')
            .Append(isolation).Append('\n');
        foreach (var (key, value) in (template.EnvVars ?? new Dictionary<string, string>()).OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            version.Append(key).Append('=').Append(value).Append('\0');
        }
        var size = FormattableString.Invariant($"{limits.CpuCount}/{limits.MemoryBytes}/{limits.DiskBytes}/{limits.MaxPids}");
        return Path.Combine(Root, DirectoryName(template.TemplateId), Hash(version.ToString())[..16] + Hash(size)[..8]);
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    // Template ids and names are [A-Za-z0-9_.:/-] (TemplateRegistry.IsValidName); escaped, a '/' cannot make a path.
    private static string DirectoryName(string templateId) => Uri.EscapeDataString(templateId);

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        // Each attempt destroys its sandbox when cancelled (bounded by its own 60 s destroy timeout).
        await Task.WhenAll(_tasks.Keys).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }

    /// <summary>Running: an attempt is under way; else <see cref="Failures"/> so far and the timestamp before which none starts.</summary>
    private sealed record Attempt(bool Running, int Failures, long RetryAt);
}

/// <summary>A start image held against removal while a create restores it.</summary>
internal sealed class StartImageLease(string path, StartImages owner) : IDisposable
{
    private int _disposed;

    public string Path { get; } = path;

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            owner.Release(Path);
        }
    }
}
