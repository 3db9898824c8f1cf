using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Envd.Filesystem;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// The idle freezer on the real daemon, runc and agent, with <c>--freeze-after 1</c>: an idle sandbox's cgroup is
/// frozen (freezer.state reads FROZEN) and everything that reaches it afterwards (a command, a file upload and
/// download, a polling watcher, a kill, its timeout, a daemon restart) finds it working. A frozen agent cannot answer
/// anything, so each call that succeeds after a freeze shows the thaw happened before the call reached it.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class FreezeTests(RuncFixture fixture) : IAsyncLifetime
{
    private static readonly TimeSpan FreezeAfter = TimeSpan.FromSeconds(1);

    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-freeze", "paddock-freeze-test");

    private RuncRuntime NewRuntime() => fixture.NewRuntime(_options);

    private LegacyCgroups Cgroups => LegacyCgroups.Discover(_options.CgroupParent);

    private Task<TestDaemon> StartDaemonAsync(RuncRuntime runtime, TimeSpan? freezeAfter = null) =>
        TestDaemon.StartAsync(runtime, _state.Path, o => o with { FreezeAfter = freezeAfter ?? FreezeAfter }, new BaseOnly(fixture.Base));

    [Fact]
    public async Task An_idle_sandbox_is_frozen_and_a_command_through_the_proxy_thaws_it()
    {
        using var runtime = NewRuntime();
        await using var daemon = await StartDaemonAsync(runtime);
        var (id, token) = await CreateSandboxAsync(daemon);

        await WaitForFreezerStateAsync(id, "FROZEN");
        // The daemon's own view follows once the freeze has completed (the sweep sees FROZEN, then records it).
        var freezer = daemon.Services.GetRequiredService<IdleFreezer>();
        for (var i = 0; i < 300 && !freezer.IsFrozen(id); i++)
        {
            await Task.Delay(100);
        }
        Assert.True(freezer.IsFrozen(id));
        Assert.True(freezer.FrozenCount >= 1);
        // Frozen: nothing of the sandbox runs, and its record still says running (E2B knows no other state).
        Assert.Equal("running", Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "state"));

        Assert.Equal((0, "hi\n"), await DaemonCommands.RunAsync(daemon, id, token, "echo hi"));
        // Idle again, it is frozen again; and thawed again by the next call.
        await WaitForFreezerStateAsync(id, "FROZEN");
        Assert.Equal((0, "again\n"), await DaemonCommands.RunAsync(daemon, id, token, "echo again"));
    }

    [Fact]
    public async Task A_sandbox_with_a_process_besides_the_agent_is_not_frozen()
    {
        using var runtime = NewRuntime();
        await using var daemon = await StartDaemonAsync(runtime);
        var (busy, busyToken) = await CreateSandboxAsync(daemon);
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, busy, busyToken, "nohup sleep 600 >/dev/null 2>&1 &")).ExitCode);
        // Created after the busy one's last call: once it is frozen, the busy one has been idle at least as long.
        var (idle, _) = await CreateSandboxAsync(daemon);
        await WaitForFreezerStateAsync(idle, "FROZEN");
        var freezer = daemon.Services.GetRequiredService<IdleFreezer>();
        await freezer.SweepAsync(CancellationToken.None);
        Assert.Equal("THAWED", Cgroups.FreezerState(busy));
        Assert.False(freezer.IsFrozen(busy));
        Assert.False(await runtime.IsOnlyAgentRunningAsync(busy, CancellationToken.None));

        // Once the background process is gone, it is frozen like any other.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, busy, busyToken, "pkill -x sleep; true")).ExitCode);
        await WaitForFreezerStateAsync(busy, "FROZEN");
    }

    [Fact]
    public async Task A_frozen_sandbox_is_killed_and_leaves_nothing()
    {
        using var runtime = NewRuntime();
        await using var daemon = await StartDaemonAsync(runtime);
        var (id, _) = await CreateSandboxAsync(daemon);
        await WaitForFreezerStateAsync(id, "FROZEN");
        var before = Cgroups.ProcessesOf(id);
        Assert.NotEmpty(before);

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        Assert.Empty(Cgroups.ProcessesOf(id));
        await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Empty(await runtime.ListAsync(CancellationToken.None));
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task The_runtime_kills_a_frozen_sandbox_without_the_freezer()
    {
        // The runtime on its own (a SIGKILL does not reach a task frozen on the v1 freezer until it is thawed):
        // what recovery, a stray's destroy or a crash of the daemon mid-freeze rely on.
        using var runtime = NewRuntime();
        // The daemon's freezer off: this is about the runtime alone.
        await using var daemon = await StartDaemonAsync(runtime, TimeSpan.Zero);
        var (id, _) = await CreateSandboxAsync(daemon);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        Assert.True(await runtime.SetFrozenAsync(id, frozen: true, timeout.Token));
        Assert.Equal("FROZEN", Cgroups.FreezerState(id));
        Assert.True(await runtime.KillProcessesAsync(id, timeout.Token));
        Assert.Empty(Cgroups.ProcessesOf(id));
        Assert.True(await daemon.Manager.KillAsync(id, "test"));
        await daemon.Manager.WaitForTeardownsAsync(timeout.Token);
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task A_frozen_sandbox_times_out()
    {
        using var runtime = NewRuntime();
        await using var daemon = await StartDaemonAsync(runtime);
        var (id, _) = await CreateSandboxAsync(daemon);
        await WaitForFreezerStateAsync(id, "FROZEN");
        // The deadline moves on the control plane, which does not touch the sandbox: it stays frozen until it ends.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", """{"timeout":1}""")).Status);
        Assert.Contains("timed out", await WaitUntilGoneAsync(daemon, id, TimeSpan.FromSeconds(60)), StringComparison.Ordinal);
        Assert.Empty(Cgroups.ProcessesOf(id));
        await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
    }

    [Fact]
    public async Task Files_and_a_polling_watcher_work_across_freezes()
    {
        using var runtime = NewRuntime();
        await using var daemon = await StartDaemonAsync(runtime);
        var (id, token) = await CreateSandboxAsync(daemon);
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, id, token, "mkdir -p /home/user/w")).ExitCode);
        var watcher = (await UnaryAsync<CreateWatcherResponse>(daemon, id, token, "CreateWatcher",
            new CreateWatcherRequest { Path = "/home/user/w" })).WatcherId;
        await WaitForFreezerStateAsync(id, "FROZEN");

        // The upload thaws it; its events wait in the kernel (and the agent) over the next freeze.
        var content = "across a freeze " + Guid.NewGuid();
        using (var upload = Request(HttpMethod.Post, id, token, "/files?path=" + Uri.EscapeDataString("/home/user/w/a.txt")))
        {
            upload.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(content));
            upload.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var response = await daemon.Raw.SendAsync(upload, timeout.Token);
            Assert.True(response.IsSuccessStatusCode, $"upload answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(timeout.Token)}");
        }
        await WaitForFreezerStateAsync(id, "FROZEN");

        var events = await UnaryAsync<GetWatcherEventsResponse>(daemon, id, token, "GetWatcherEvents", new GetWatcherEventsRequest { WatcherId = watcher });
        Assert.Contains(events.Events, e => e.Name == "a.txt" && e.Type == EventType.Create);
        await WaitForFreezerStateAsync(id, "FROZEN");

        using (var download = Request(HttpMethod.Get, id, token, "/files?path=" + Uri.EscapeDataString("/home/user/w/a.txt")))
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            using var response = await daemon.Raw.SendAsync(download, timeout.Token);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(content, await response.Content.ReadAsStringAsync(timeout.Token));
        }
    }

    [Fact]
    public async Task A_frozen_sandbox_survives_a_daemon_restart()
    {
        string id, token;
        using (var runtime = NewRuntime())
        {
            await using (var daemon = await StartDaemonAsync(runtime))
            {
                (id, token) = await CreateSandboxAsync(daemon);
                await WaitForFreezerStateAsync(id, "FROZEN");
            }
            // A clean stop thaws what its freezer froze.
            Assert.Equal("THAWED", Cgroups.FreezerState(id));
            // A daemon that crashed would have left it frozen: so leave it.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            Assert.True(await runtime.SetFrozenAsync(id, frozen: true, timeout.Token));
        }

        using (var runtime = NewRuntime())
        await using (var daemon = await StartDaemonAsync(runtime))
        {
            // Recovery thawed it before adopting it (the new freezer knows nothing of the old one's freezes).
            Assert.Equal("THAWED", Cgroups.FreezerState(id));
            Assert.Equal((0, "still here\n"), await DaemonCommands.RunAsync(daemon, id, token, "echo still here"));
            await WaitForFreezerStateAsync(id, "FROZEN");
            Assert.Equal((0, "and here\n"), await DaemonCommands.RunAsync(daemon, id, token, "echo and here"));
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
            await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
            Assert.Equal(new HostFootprint(0, 0, 0, 0, 0), HostFootprint.Take(_options));
        }
    }

    /// <summary>Polls the sandbox's freezer.state until it reads <paramref name="expected"/> (bounded: 30 s, many sweeps at 1 s).</summary>
    private Task WaitForFreezerStateAsync(string sandboxId, string expected) =>
        WaitForFreezerStateAsync(Cgroups, sandboxId, expected, TimeSpan.FromSeconds(30));

    /// <summary>Polls <paramref name="sandboxId"/>'s freezer.state in <paramref name="cgroups"/> until it reads <paramref name="expected"/>, for at most <paramref name="bound"/>.</summary>
    internal static async Task WaitForFreezerStateAsync(LegacyCgroups cgroups, string sandboxId, string expected, TimeSpan bound)
    {
        var deadline = DateTime.UtcNow + bound;
        string? state;
        while ((state = cgroups.FreezerState(sandboxId)) != expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"sandbox {sandboxId}'s freezer.state was {state ?? "(gone)"} for {bound.TotalSeconds:0} s, expected {expected}");
            await Task.Delay(100);
        }
    }

    private static HttpRequestMessage Request(HttpMethod method, string sandboxId, string token, string path)
    {
        var message = new HttpRequestMessage(method, path);
        message.Headers.Add("E2b-Sandbox-Id", sandboxId);
        message.Headers.Add("E2b-Sandbox-Port", "49983");
        message.Headers.Add("X-Access-Token", token);
        message.Headers.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes("user:")));
        return message;
    }

    /// <summary>A Connect unary call of filesystem.Filesystem (JSON codec) through the daemon's proxy.</summary>
    private static async Task<T> UnaryAsync<T>(TestDaemon daemon, string sandboxId, string token, string method, IMessage request)
        where T : IMessage<T>, new()
    {
        using var message = Request(HttpMethod.Post, sandboxId, token, "/filesystem.Filesystem/" + method);
        message.Content = new StringContent(JsonFormatter.Default.Format(request), Encoding.UTF8);
        message.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        message.Headers.Add("Connect-Protocol-Version", "1");
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var response = await daemon.Raw.SendAsync(message, timeout.Token);
        var text = await response.Content.ReadAsStringAsync(timeout.Token);
        Assert.True(response.IsSuccessStatusCode, $"{method} answered {(int)response.StatusCode}: {text}");
        return new JsonParser(JsonParser.Settings.Default.WithIgnoreUnknownFields(true)).Parse<T>(text);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        using var runtime = NewRuntime();
        await RuncFixture.DestroyAllAsync(runtime);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
