using System.Net;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// E2B's network fields through the real daemon over the fixture's runc tier with egress: <c>network.allowOut</c> /
/// <c>denyOut</c> at create, and <c>PUT /sandboxes/{id}/network</c> at run time, checked from inside the sandbox.
/// </summary>
[Collection(NetworkCollection.Name)]
public sealed class NetworkApiTests(NetworkFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() => _daemon = await TestDaemon.StartAsync(fixture.Runtime, _state.Path, templates: new BaseOnly(fixture.Base));

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    [Fact]
    public async Task Create_applies_allowOut_and_denyOut_and_PUT_network_replaces_them()
    {
        var outside = fixture.Outside;
        var created = await CreateAsync(_daemon, $$$"""{"templateID":"base","secure":false,"network":{"allowOut":["{{{outside.Address}}}"],"denyOut":["0.0.0.0/0"]}}""");
        var id = Get<string>(created, "sandboxID");
        await using var sandbox = new NetSandbox(fixture, id);

        Assert.Contains("outside 8080", await sandbox.ConnectAsync(outside.Address, 8080), StringComparison.Ordinal);
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(outside.Other, 8080), StringComparison.Ordinal);

        var put = await SendAsync(_daemon.Api, HttpMethod.Put, $"/sandboxes/{id}/network", """{"allow_internet_access":false}""");
        Assert.Equal(HttpStatusCode.NoContent, put.Status);
        Assert.StartsWith("ERR ", await sandbox.ConnectAsync(outside.Address, 8080), StringComparison.Ordinal);

        // Omitting every field clears the rules: allow all again (E2B: "Omitting a field clears it").
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Put, $"/sandboxes/{id}/network", "{}")).Status);
        Assert.Contains("outside 8080", await sandbox.ConnectAsync(outside.Other, 8080), StringComparison.Ordinal);
        Assert.Equal(EgressPolicy.AllowAll.DenyOut, sandbox.Link.Policy.DenyOut);
    }

    [Fact]
    public async Task Malformed_network_rules_are_a_400_and_an_unknown_sandbox_a_404()
    {
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes",
            """{"templateID":"base","network":{"denyOut":["example.com"]}}"""));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes",
            """{"templateID":"base","secure":false,"network":{"allowOut":"10.0.0.1"}}"""));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Put, "/sandboxes/nosuchsandbox/network",
            """{"allowOut":["not a host"]}"""));
        AssertError(HttpStatusCode.NotFound, await SendAsync(_daemon.Api, HttpMethod.Put, "/sandboxes/nosuchsandbox/network",
            """{"allowOut":["10.0.0.1"]}"""));
        Assert.Empty(_daemon.Manager.Running);
    }
}
