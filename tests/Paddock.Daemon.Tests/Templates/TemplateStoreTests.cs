using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>The store's caching and versioning, with a recipe that writes a few files (needs root, for chown).</summary>
public sealed class TemplateStoreTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-store-");

    public TemplateStoreTests() => Runtimes.TestEnvironment.RequireRootAndRunc();

    private TemplateStore Store() => new(_dir.FullName, IdMapping.Default, [], NullLogger<TemplateStore>.Instance);

    private static CancellationToken Timeout => Runtimes.TestEnvironment.Timeout(TimeSpan.FromSeconds(30));

    [Fact]
    public async Task A_recipe_is_built_once_and_reused_with_its_owners_shifted()
    {
        var recipe = new CountingRecipe("alpha");
        var progress = new List<string>();

        var first = await Store().EnsureAsync(recipe, Timeout, progress.Add);
        var second = await Store().EnsureAsync(recipe, Timeout);

        Assert.Equal(1, recipe.Builds);
        Assert.Equal(first.Version, second.Version);
        Assert.Equal(first.BuiltAt, second.BuiltAt);
        Assert.Equal(Path.Combine(_dir.FullName, "counting", first.Version, "rootfs"), first.RootfsPath);
        Assert.Equal("hello\n", File.ReadAllText(Path.Combine(first.RootfsPath, "etc", "greeting")));
        Assert.Equal(100000u, Files.Stat(Path.Combine(first.RootfsPath, "etc", "greeting")).Uid);
        Assert.Equal("someone", first.DefaultUser);
        Assert.Contains(progress, line => line.Contains("populated", StringComparison.Ordinal));
        Assert.True(File.Exists(Path.Combine(_dir.FullName, "counting", first.Version, "template.json")));
    }

    [Fact]
    public async Task A_changed_recipe_builds_a_new_version_beside_the_old_one()
    {
        var v1 = await Store().EnsureAsync(new CountingRecipe("alpha"), Timeout);
        var changed = new CountingRecipe("beta");

        var v2 = await Store().EnsureAsync(changed, Timeout);

        Assert.Equal(1, changed.Builds);
        Assert.NotEqual(v1.Version, v2.Version);
        Assert.True(Directory.Exists(v1.RootfsPath));
        Assert.Equal(2, Store().List().Count(t => t.Name == "counting"));
    }

    [Fact]
    public async Task Concurrent_requests_build_once()
    {
        var recipe = new CountingRecipe("alpha") { Delay = TimeSpan.FromMilliseconds(300) };
        var store = Store();

        var all = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => store.EnsureAsync(recipe, Timeout))).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, recipe.Builds);
        Assert.Single(all.Select(t => t.Version).Distinct());
    }

    [Fact]
    public async Task A_failed_build_leaves_no_version_and_no_staging_directory()
    {
        var recipe = new CountingRecipe("alpha") { Fail = true };

        await Assert.ThrowsAsync<InvalidOperationException>(() => Store().EnsureAsync(recipe, Timeout));

        Assert.Empty(Store().List());
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(_dir.FullName, "counting")));
    }

    public void Dispose() => _dir.Delete(recursive: true);

    private sealed class CountingRecipe(string content) : ITemplateRecipe
    {
        private int _builds;

        public int Builds => _builds;

        public TimeSpan Delay { get; init; }

        public bool Fail { get; init; }

        public string Name => "counting";

        public string Fingerprint => "counting " + content;

        public string? DefaultUser => "someone";

        public async Task PopulateAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _builds);
            await Task.Delay(Delay, cancellationToken);
            Directory.CreateDirectory(Path.Combine(rootfs, "etc"));
            await File.WriteAllTextAsync(Path.Combine(rootfs, "etc", "greeting"), "hello\n", cancellationToken);
            if (Fail)
            {
                throw new InvalidOperationException("recipe failed on purpose");
            }
            progress("populated " + content);
        }
    }
}
