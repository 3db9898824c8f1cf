using System.Net;
using System.Net.Http.Headers;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Volumes;

/// <summary>Volumes on the runc tier, through the real daemon, the real runc and the base template.</summary>
[Collection(RuncCollection.Name)]
public sealed class RuncVolumeTests(RuncFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("volumes", "paddock-volume-test");

    private ITemplateLookup Templates => new BaseOnly(fixture.Base);

    [Fact]
    public async Task A_volume_carries_files_from_one_sandbox_to_the_next_within_its_limit_and_team()
    {
        using var runtime = fixture.NewRuntime(_options);
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates);
        await VolumeScenario.RunAsync(daemon, isolation: null);
    }

    [Fact]
    public async Task A_volume_and_its_users_survive_a_daemon_restart()
    {
        string volumeId, token, sandboxId;
        using (var runtime = fixture.NewRuntime(_options))
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates))
        {
            var volume = (await SendAsync(daemon.Api, HttpMethod.Post, "/volumes", """{"name":"keep","sizeMB":16}""")).Body!;
            (volumeId, token) = (Get<string>(volume, "volumeID"), Get<string>(volume, "token"));
            var sandbox = await CreateAsync(daemon, """{"templateID":"base","timeout":300,"volumeMounts":[{"name":"keep","path":"/keep"}]}""");
            sandboxId = Get<string>(sandbox, "sandboxID");
            var (exit, _) = await DaemonCommands.RunAsync(daemon, sandboxId, Get<string>(sandbox, "envdAccessToken"), "echo kept > /keep/file");
            Assert.Equal(0, exit);
        }

        using (var runtime = fixture.NewRuntime(_options))
        await using (var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates))
        {
            // The re-adopted sandbox still holds it: the delete is refused.
            AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Delete, $"/volumes/{volumeId}"));
            using var content = new HttpClient { BaseAddress = daemon.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
            content.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
            Assert.Equal("kept\n", await content.GetStringAsync($"/volumecontent/{volumeId}/file?path=file"));
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{sandboxId}")).Status);
            await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/volumes/{volumeId}")).Status);
        }
    }

    [Fact]
    public async Task Hostile_mounts_are_refused_before_anything_starts()
    {
        using var runtime = fixture.NewRuntime(_options);
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, templates: Templates);
        Assert.Equal(HttpStatusCode.Created, (await SendAsync(daemon.Api, HttpMethod.Post, "/volumes", """{"name":"v","sizeMB":16}""")).Status);
        foreach (var path in new[] { "/proc", "/dev", "/.paddock/x", "/etc", "../x", "/a/../../etc" })
        {
            var message = AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes",
                $$"""{"templateID":"base","volumeMounts":[{"name":"v","path":"{{path}}"}]}"""));
            Assert.Contains("volumeMounts[0].path", message, StringComparison.Ordinal);
        }
        AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes",
            """{"templateID":"base","volumeMounts":[{"name":"v","path":"/a"},{"name":"v","path":"/a"}]}"""));
        Assert.Empty(await runtime.ListAsync(CancellationToken.None));
        var id = Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, "/volumes")).Body!.AsArray()[0]!, "volumeID");
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/volumes/{id}")).Status);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        using var runtime = fixture.NewRuntime(_options);
        await RuncFixture.DestroyAllAsync(runtime);
        VolumeScenario.Cleanup(_state.Path);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
