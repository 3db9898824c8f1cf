using System.Net.Http.Headers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Sandboxes;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// The real paddockd (its host, store, lifecycle and proxy) on a loopback port 0 in this process, over a runtime double.
/// Stopping it leaves the runtime's sandboxes running, as stopping the real daemon does.
/// </summary>
internal sealed class TestDaemon : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TestDaemon(WebApplication app, Uri baseAddress, string apiKey, string? printedKey)
    {
        _app = app;
        BaseAddress = baseAddress;
        ApiKey = apiKey;
        PrintedKey = printedKey;
        Api = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Api.DefaultRequestHeaders.Add("X-API-Key", apiKey);
        Raw = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseAddress { get; }

    public int Port => BaseAddress.Port;

    /// <summary>The key from the state directory's api-key file.</summary>
    public string ApiKey { get; }

    /// <summary>The key InitializeAsync returned to print (first start only).</summary>
    public string? PrintedKey { get; }

    /// <summary>Sends X-API-Key.</summary>
    public HttpClient Api { get; }

    /// <summary>Sends nothing of its own.</summary>
    public HttpClient Raw { get; }

    public IServiceProvider Services => _app.Services;

    public SandboxManager Manager => _app.Services.GetRequiredService<SandboxManager>();

    public static Task<TestDaemon> StartAsync(ISandboxRuntime runtime, string stateDir, Func<DaemonOptions, DaemonOptions>? configure = null, ITemplateLookup? templates = null) =>
        StartAsync([SandboxTier.Of(runtime)], stateDir, configure, templates);

    /// <summary>A daemon over several isolation tiers (the first is the default unless <paramref name="configure"/> sets one).</summary>
    public static async Task<TestDaemon> StartAsync(IReadOnlyList<SandboxTier> tiers, string stateDir, Func<DaemonOptions, DaemonOptions>? configure = null, ITemplateLookup? templates = null)
    {
        var options = new DaemonOptions { Listen = new Uri("http://127.0.0.1:0"), StateDir = stateDir };
        options = configure?.Invoke(options) ?? options;
        var app = DaemonHost.Build(options, services =>
        {
            foreach (var tier in tiers)
            {
                services.AddSingleton(tier);
            }
            services.AddSingleton(templates ?? new FixedTemplates());
        }, logging => logging.SetMinimumLevel(LogLevel.Warning));
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var printed = await DaemonHost.InitializeAsync(app, timeout.Token);
            await app.StartAsync(timeout.Token);
            var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            var key = (await File.ReadAllTextAsync(Path.Combine(stateDir, ApiKeyBootstrap.FileName), timeout.Token)).Trim();
            return new TestDaemon(app, new Uri(address), key, printed);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Api.Dispose();
        Raw.Dispose();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await _app.StopAsync(timeout.Token);
        await _app.DisposeAsync();
    }
}

/// <summary>A temporary state directory, removed afterwards.</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("paddockd-test-").FullName;
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // best effort: the OS temp cleaner gets the rest
        }
    }
}
