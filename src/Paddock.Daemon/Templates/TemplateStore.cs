using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Built templates on disk: <c>DIR/NAME/VERSION/rootfs</c> with <c>DIR/NAME/VERSION/template.json</c> beside it.
/// A version is the hash of the recipe's fingerprint and the id mapping, so a second request for an unchanged
/// recipe reuses the build, and a changed recipe builds a new version next to the old one (sandboxes may still run
/// on the old one; nothing removes it yet). A version directory appears only once complete (built elsewhere, then
/// renamed), so a crash mid-build leaves only a <c>.build-*</c> directory that the next build removes.
/// </summary>
internal sealed class TemplateStore
{
    private const string MetadataFileName = "template.json";
    private const string BuildPrefix = ".build-";

    private readonly IReadOnlyDictionary<string, ITemplateRecipe> _recipes;
    private readonly IdMapping _mapping;
    private readonly ILogger<TemplateStore> _logger;
    private readonly KeyedLock _locks = new();

    // Built versions already read, by "name/version": a complete version never changes, so a create reads its
    // template.json once, not each time (checked for presence only: a version removed by hand is read again).
    private readonly ConcurrentDictionary<string, TemplateInfo> _built = new(StringComparer.Ordinal);

    public TemplateStore(string directory, IdMapping mapping, IEnumerable<ITemplateRecipe> recipes, ILogger<TemplateStore> logger)
    {
        Directory = directory;
        _mapping = mapping;
        _logger = logger;
        _recipes = recipes.ToDictionary(r => r.Name, StringComparer.Ordinal);
    }

    public string Directory { get; }

    /// <summary>The names of the templates this store can build.</summary>
    public IReadOnlyCollection<string> RecipeNames => (IReadOnlyCollection<string>)_recipes.Keys;

    /// <summary>The recipe of <paramref name="nameOrAlias"/> (its name or one of its aliases), or null.</summary>
    public ITemplateRecipe? RecipeFor(string nameOrAlias) =>
        _recipes.TryGetValue(nameOrAlias, out var recipe) ? recipe : _recipes.Values.FirstOrDefault(r => r.Aliases.Contains(nameOrAlias, StringComparer.Ordinal));

    /// <summary>The version a recipe builds to under this store's id mapping.</summary>
    public string VersionOf(ITemplateRecipe recipe)
    {
        var key = $"{recipe.Fingerprint}\nidmap={_mapping.HostBase}:{_mapping.Size}\nstore=v1";
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)))[..16];
    }

    /// <summary>
    /// The template <paramref name="name"/> in the version its registered recipe builds, building it first when it
    /// is not there. Throws <see cref="KeyNotFoundException"/> for a name without a recipe.
    /// </summary>
    public Task<TemplateInfo> GetOrBuildAsync(string name, CancellationToken cancellationToken, Action<string>? progress = null) =>
        _recipes.TryGetValue(name, out var recipe)
            ? EnsureAsync(recipe, cancellationToken, progress)
            : throw new KeyNotFoundException($"no template named '{name}'");

    /// <summary>The built template of <paramref name="recipe"/>, building it first when needed.</summary>
    public async Task<TemplateInfo> EnsureAsync(ITemplateRecipe recipe, CancellationToken cancellationToken, Action<string>? progress = null)
    {
        var version = VersionOf(recipe);
        var key = $"{recipe.Name}/{version}";
        if (_built.TryGetValue(key, out var known) && System.IO.Directory.Exists(known.RootfsPath))
        {
            return known;
        }
        if (Find(recipe.Name, version) is { } cached)
        {
            TemplatesLog.Reused(_logger, recipe.Name, version);
            _built[key] = cached;
            return cached;
        }
        using var held = await _locks.AcquireAsync(recipe.Name, cancellationToken);
        await using var fileLock = await AcquireFileLockAsync(Path.Combine(Directory, recipe.Name), cancellationToken);
        if (Find(recipe.Name, version) is { } builtMeanwhile)
        {
            return builtMeanwhile;
        }
        return await BuildAsync(recipe, version, progress, cancellationToken);
    }

    /// <summary>A built version, or null when it is not (completely) there.</summary>
    public TemplateInfo? Find(string name, string version)
    {
        var dir = Path.Combine(Directory, name, version);
        return TemplateInfo.TryRead(Path.Combine(dir, MetadataFileName), Path.Combine(dir, "rootfs"));
    }

    /// <summary>Every complete version of every template.</summary>
    public IReadOnlyList<TemplateInfo> List()
    {
        var found = new List<TemplateInfo>();
        if (!System.IO.Directory.Exists(Directory))
        {
            return found;
        }
        foreach (var nameDir in System.IO.Directory.EnumerateDirectories(Directory))
        {
            foreach (var versionDir in System.IO.Directory.EnumerateDirectories(nameDir))
            {
                if (!Path.GetFileName(versionDir).StartsWith('.') && Find(Path.GetFileName(nameDir), Path.GetFileName(versionDir)) is { } info)
                {
                    found.Add(info);
                }
            }
        }
        return found;
    }

    private async Task<TemplateInfo> BuildAsync(ITemplateRecipe recipe, string version, Action<string>? progress, CancellationToken cancellationToken)
    {
        var nameDir = Path.Combine(Directory, recipe.Name);
        RemoveStaleBuilds(nameDir);
        var staging = Path.Combine(nameDir, $"{BuildPrefix}{version}-{Guid.NewGuid().ToString("N")[..8]}");
        var rootfs = Path.Combine(staging, "rootfs");
        System.IO.Directory.CreateDirectory(rootfs);
        var clock = Stopwatch.StartNew();
        TemplatesLog.BuildStarted(_logger, recipe.Name, version);
        try
        {
            void Report(string line)
            {
                TemplatesLog.BuildProgress(_logger, recipe.Name, line);
                progress?.Invoke(line);
            }
            await recipe.PopulateAsync(rootfs, Report, cancellationToken);
            var shifted = OwnershipShift.Shift(rootfs, _mapping);
            Report($"owners of {shifted} files shifted to host ids from {_mapping.HostBase}");
            var info = new TemplateInfo
            {
                Name = recipe.Name,
                Version = version,
                DefaultUser = recipe.DefaultUser,
                BuiltAt = DateTimeOffset.UtcNow,
                BuildSeconds = Math.Round(clock.Elapsed.TotalSeconds, 1),
                IdMappingHostBase = _mapping.HostBase,
                IdMappingSize = _mapping.Size,
                Recipe = recipe.Fingerprint,
            };
            info.Write(Path.Combine(staging, MetadataFileName));
            System.IO.Directory.Move(staging, Path.Combine(nameDir, version));
            TemplatesLog.BuildFinished(_logger, recipe.Name, version, clock.Elapsed.TotalSeconds);
            return Find(recipe.Name, version) ?? throw new IOException($"template {recipe.Name} {version} vanished right after its build");
        }
        catch (Exception ex)
        {
            TemplatesLog.BuildFailed(_logger, recipe.Name, version, ex);
            RemoveBuildDirectory(staging);
            throw;
        }
    }

    private static void RemoveStaleBuilds(string nameDir)
    {
        if (!System.IO.Directory.Exists(nameDir))
        {
            return;
        }
        foreach (var dir in System.IO.Directory.EnumerateDirectories(nameDir, BuildPrefix + "*"))
        {
            RemoveBuildDirectory(dir);
        }
    }

    /// <summary>
    /// Removes a build directory, after unmounting what a killed debootstrap may have left mounted in it (/proc,
    /// /sys): deleting recursively through a mount would delete what is mounted.
    /// </summary>
    private static void RemoveBuildDirectory(string dir)
    {
        foreach (var mountPoint in MountTable.Under(dir))
        {
            Mounts.Unmount(mountPoint, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
        }
        if (MountTable.Under(dir).Count > 0)
        {
            throw new IOException($"{dir} still has mounts after unmounting; remove it by hand");
        }
        if (System.IO.Directory.Exists(dir))
        {
            System.IO.Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// An exclusive lock on the template's directory across processes (a daemon and a test run sharing a store), held
    /// for the build. .NET takes flock(2) LOCK_EX for FileShare.None; polled, because flock has no timeout.
    /// </summary>
    private static async Task<FileStream> AcquireFileLockAsync(string nameDir, CancellationToken cancellationToken)
    {
        System.IO.Directory.CreateDirectory(nameDir);
        var path = Path.Combine(nameDir, ".lock");
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException)
            {
                await Task.Delay(250, cancellationToken);
            }
        }
    }
}
