using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>
/// Start images' bookkeeping without a tier (the gVisor end to end is Api/GvisorStartImageTests): the option, when
/// an image is asked for, the back-off after a failed attempt, and what the start's sweep and a template delete remove.
/// </summary>
public sealed class StartImagesTests : IDisposable
{
    private readonly TempDir _state = new();

    private static readonly ResourceLimits Limits = new(2, 512L << 20, 256, 1L << 30);

    [Fact]
    public void The_option_is_on_by_default_and_set_by_flag_or_variable()
    {
        Assert.True(DaemonOptions.Parse([], _ => null).StartImages);
        Assert.False(DaemonOptions.Parse(["--start-images", "off"], _ => null).StartImages);
        Assert.False(DaemonOptions.Parse([], name => name == "PADDOCK_START_IMAGES" ? "off" : null).StartImages);
        var error = Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--start-images", "maybe"], _ => null));
        Assert.Contains("expected on or off", error.Message);
    }

    [Fact]
    public async Task A_failed_attempt_is_not_retried_on_the_next_create_and_a_template_without_a_start_command_never_asks()
    {
        var runtime = new FailingRuntime();
        await using var images = new StartImages(runtime, new DaemonOptions { StateDir = _state.Path }, NullLogger<StartImages>.Instance, new NoServices());
        var plain = new SandboxTemplate("plain", null, ["/nonexistent"]);
        Assert.Null(images.Find(plain, Limits, "gvisor"));
        Assert.Equal(0, runtime.Starts);

        var withStart = plain with { TemplateId = "served", StartCmd = "exec sleep 600" };
        Assert.Null(images.Find(withStart, Limits, "gvisor"));
        // Bounded: 100 looks 50 ms apart for the background attempt to fail.
        for (var i = 0; i < 100 && runtime.Destroys == 0; i++)
        {
            await Task.Delay(50);
        }
        Assert.Equal(1, runtime.Starts);
        Assert.Equal(1, runtime.Destroys);
        // Backing off: further creates take the slow path without starting another attempt.
        for (var i = 0; i < 5; i++)
        {
            Assert.Null(images.Find(withStart, Limits, "gvisor"));
        }
        await Task.Delay(200);
        Assert.Equal(1, runtime.Starts);
        Assert.Empty(images.ImagesOf("served"));
        Assert.False(Directory.Exists(images.Root) && Directory.EnumerateDirectories(images.Root, ".tmp-*", SearchOption.AllDirectories).Any());
    }

    [Fact]
    public async Task Off_asks_for_nothing()
    {
        var runtime = new FailingRuntime();
        await using var images = new StartImages(runtime, new DaemonOptions { StateDir = _state.Path, StartImages = false }, NullLogger<StartImages>.Instance, new NoServices());
        Assert.Null(images.Find(new SandboxTemplate("served", null, ["/nonexistent"]) { StartCmd = "exec sleep 600" }, Limits, "gvisor"));
        await Task.Delay(200);
        Assert.Equal(0, runtime.Starts);
    }

    [Fact]
    public async Task The_sweep_removes_unfinished_images_and_those_of_templates_gone_and_a_delete_removes_a_templates_own()
    {
        await using var images = new StartImages(new FailingRuntime(), new DaemonOptions { StateDir = _state.Path }, NullLogger<StartImages>.Instance, new NoServices());
        var kept = Path.Combine(images.Root, "kept", "0123456789abcdef01234567");
        var unfinished = Path.Combine(images.Root, "kept", ".tmp-0123456789abcdef01234567-1a2b3c4d");
        var orphan = Path.Combine(images.Root, "gone", "0123456789abcdef01234567");
        foreach (var directory in (string[])[kept, unfinished, orphan])
        {
            Directory.CreateDirectory(Path.Combine(directory, "image"));
        }
        var record = new TemplateRecord { TemplateId = "kept", Kind = TemplateKind.Build, Layers = ["/nonexistent"], CreatedAt = DateTimeOffset.UtcNow };

        Assert.Equal(2, images.Sweep([record]));
        Assert.Equal([kept], images.ImagesOf("kept"));
        Assert.False(Directory.Exists(unfinished));
        Assert.False(Directory.Exists(Path.Combine(images.Root, "gone")));

        images.RemoveAll("kept");
        Assert.Empty(Directory.EnumerateFileSystemEntries(images.Root));
    }

    public void Dispose() => _state.Dispose();

    private sealed class NoServices : IServiceProvider
    {
        public object? GetService(Type serviceType) => null;
    }

    /// <summary>A tier whose every start fails, counting starts and destroys.</summary>
    private sealed class FailingRuntime : ISandboxRuntime
    {
        private int _starts;
        private int _destroys;

        public int Starts => Volatile.Read(ref _starts);

        public int Destroys => Volatile.Read(ref _destroys);

        public string Name => "failing";

        public Task<RuntimeSandbox> StartAsync(SandboxSpec spec, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _starts);
            throw new SandboxStartException(spec.SandboxId, "this tier starts nothing");
        }

        public Task DestroyAsync(string sandboxId, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _destroys);
            return Task.CompletedTask;
        }

        public Task<IReadOnlyList<RuntimeSandbox>> ListAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<RuntimeSandbox>>([]);

        public Task<IReadOnlyList<string>> CleanupLeftoversAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlyList<string>>([]);

        public Task<SandboxUsage?> GetUsageAsync(string sandboxId, CancellationToken cancellationToken) => Task.FromResult<SandboxUsage?>(null);

        public ValueTask<Stream> ConnectAsync(string sandboxId, int port, CancellationToken cancellationToken) => throw new SandboxPortUnreachableException(sandboxId, port);

        public Task<long> SnapshotFilesystemAsync(string sandboxId, string destination, CancellationToken cancellationToken) => Task.FromResult(0L);

        public Task UpdateNetworkAsync(string sandboxId, Networking.EgressPolicy policy, CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
