using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// A full address pool is the host's capacity, not a fault: the create answers 503 naming the pool and the way out,
/// nothing of the refused sandbox stays, and the address comes back when a sandbox ends. The runtime here has its own
/// /30 (one sandbox address), nftables table, interface prefix, cgroup parent and state, next to the fixture's.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class AddressPoolTests(NetworkFixture fixture) : IAsyncLifetime
{
    private static readonly int Pid = Environment.ProcessId;
    private readonly TempDir _state = new();
    private RuncRuntime _runtime = null!;
    private RuncOptions _options = null!;
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync()
    {
        _options = fixture.Options with
        {
            StateDirectory = Path.Combine(TestEnvironment.StateRoot, "net-small", Pid.ToString(CultureInfo.InvariantCulture)),
            CgroupParent = $"paddock-nettest-small-{Pid}",
            Network = fixture.Options.Network! with
            {
                Pool = $"10.204.{Pid % 250 + 1}.0/30",
                TableName = $"paddock_test_small_{Pid}",
                InterfacePrefix = $"pq{Pid % 1_000_000}s",
            },
        };
        _runtime = new RuncRuntime(_options, fixture.AgentBinary, NullLogger<RuncRuntime>.Instance);
        await _runtime.CleanupLeftoversAsync(TestEnvironment.Timeout(TimeSpan.FromMinutes(1)));
        _daemon = await TestDaemon.StartAsync(_runtime, _state.Path, templates: new BaseOnly(fixture.Base));
    }

    public async Task DisposeAsync()
    {
        if (_daemon is not null)
        {
            await _daemon.DisposeAsync();
        }
        await NetworkFixture.DestroyAsync(_runtime, _options);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    [Fact]
    public async Task A_full_address_pool_is_a_503_that_leaves_nothing_and_frees_up_when_a_sandbox_ends()
    {
        var first = Get<string>(await CreateAsync(_daemon, """{"templateID":"base","secure":false}"""), "sandboxID");

        var refused = await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base","secure":false}""");
        var message = AssertError(HttpStatusCode.ServiceUnavailable, refused);
        Assert.Contains("address pool", message, StringComparison.Ordinal);
        Assert.Contains(_options.Network!.Pool, message, StringComparison.Ordinal);
        Assert.Contains("Runc:Network:Pool", message, StringComparison.Ordinal);

        // Only the first sandbox runs, in the API and on the host; the refused one left no directory behind.
        Assert.Equal([first], _daemon.Manager.Running.Select(r => r.SandboxId));
        Assert.Equal([first], (await _runtime.ListAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(30)))).Select(s => s.SandboxId));
        Assert.Equal([first], Directory.EnumerateDirectories(_options.SandboxesDirectory).Select(Path.GetFileName));

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{first}")).Status);
        await WaitUntilGoneAsync(_daemon, first, TimeSpan.FromSeconds(30));
        // The address is free once the first sandbox's pieces are gone (a teardown may finish after the kill answers):
        // creates are retried on 503 only, for at most 30 s.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        var again = await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base","secure":false}""");
        while (again.Status == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
            again = await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base","secure":false}""");
        }
        Assert.True(again.Status == HttpStatusCode.Created, $"create after the kill answered {(int)again.Status}: {again.Body?.ToJsonString()}");
        Assert.NotEqual(first, Get<string>(again.Body!, "sandboxID"));
    }
}
