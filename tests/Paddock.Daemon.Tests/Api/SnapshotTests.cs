using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// Filesystem snapshots and the template routes on the real daemon, the real runc tier and the real base template:
/// a snapshot of a running sandbox becomes a layer on top of base, a new sandbox from it sees exactly the first
/// one's changes at that moment (new, changed and deleted files, a replaced directory), the first keeps running,
/// and the template cannot be deleted while a sandbox uses it. Needs root and runc, as CI has.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class SnapshotTests(RuncFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private readonly RuncOptions _options = RuncFixture.OwnOptions("daemon-snapshots", "paddock-snapshot-test");

    private RuncRuntime? _runtime;

    private ITemplateLookup Builtins => new BaseOnly(fixture.Base);

    [Fact]
    public async Task A_snapshot_is_a_template_that_starts_sandboxes_with_exactly_the_changes_while_its_sandbox_runs_on()
    {
        _runtime = fixture.NewRuntime(_options);
        await using var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, templates: Builtins);
        var first = await CreateAsync(daemon, """{"templateID":"base","timeout":600}""");
        var a = Get<string>(first, "sandboxID");
        var tokenA = Get<string>(first, "envdAccessToken");
        var (exit, _) = await DaemonCommands.RunAsync(daemon, a, tokenA, """
            echo new > /home/user/new.txt &&
            rm /etc/issue &&
            rm -rf /etc/default && mkdir /etc/default && echo only > /etc/default/only &&
            echo changed > /etc/hostname.copy
            """, user: "root");
        Assert.Equal(0, exit);

        var created = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{a}/snapshots", """{"name":"my-snap"}""");
        Assert.True(created.Status == HttpStatusCode.Created, $"snapshot answered {(int)created.Status}: {created.Body?.ToJsonString()}");
        var snapshotId = Get<string>(created.Body!, "snapshotID");
        Assert.Equal(["my-snap"], created.Body!["names"]!.AsArray().Select(n => (string)n!));

        // The first sandbox runs on, and what it writes now is not in the snapshot.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, a, tokenA, "echo later > /home/user/later.txt")).ExitCode);

        foreach (var name in (string[])[snapshotId, "my-snap"])
        {
            var second = await CreateAsync(daemon, $$"""{"templateID":"{{name}}","timeout":600}""");
            var b = Get<string>(second, "sandboxID");
            var tokenB = Get<string>(second, "envdAccessToken");
            Assert.Equal(snapshotId, Get<string>(second, "templateID"));
            var (_, seen) = await DaemonCommands.RunAsync(daemon, b, tokenB, """
                cat /home/user/new.txt; ls /etc/default; cat /etc/hostname.copy
                test -e /etc/issue && echo issue-present; test -e /home/user/later.txt && echo later-present
                test -e /etc/passwd && echo base-present; whoami
                """);
            Assert.Equal("new\nonly\nchanged\nbase-present\nuser\n", seen);

            // In use: a clear 409 that names the sandbox.
            var refused = AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{snapshotId}"));
            Assert.Contains(b, refused, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{b}")).Status);
        }
        Assert.Equal("later\n", (await DaemonCommands.RunAsync(daemon, a, tokenA, "cat /home/user/later.txt")).Stdout);

        // Listed as a template (two layers, its size, its parent) and as a snapshot of its sandbox.
        var templates = (await SendAsync(daemon.Api, HttpMethod.Get, "/templates")).Body!.AsArray();
        var listed = templates.Single(t => (string)t!["templateID"]! == snapshotId)!;
        Assert.Equal(2, Get<int>(listed, "layers"));
        Assert.Equal("base", Get<string>(listed, "parentID"));
        Assert.True(Get<long>(listed, "sizeBytes") > 0);
        Assert.False(Get<bool>(listed, "public"));
        Assert.True(Get<bool>(templates.Single(t => (string)t!["templateID"]! == "base")!, "public"));
        var detail = await SendAsync(daemon.Api, HttpMethod.Get, $"/templates/{snapshotId}");
        Assert.Equal(HttpStatusCode.OK, detail.Status);
        Assert.Equal("ready", (string)detail.Body!["builds"]![0]!["status"]!);
        var snapshots = (await SendAsync(daemon.Api, HttpMethod.Get, $"/snapshots?sandboxID={a}")).Body!.AsArray();
        Assert.Equal([snapshotId], snapshots.Select(s => (string)s!["snapshotID"]!));
        Assert.Empty((await SendAsync(daemon.Api, HttpMethod.Get, "/snapshots?sandboxID=nosuchsandbox")).Body!.AsArray());

        // Another team neither sees nor starts from it.
        var registry = daemon.Services.GetRequiredService<TemplateRegistry>();
        Assert.DoesNotContain(await registry.ListAsync("other-team", CancellationToken.None), t => t.TemplateId == snapshotId);
        Assert.Null(await registry.FindAsync(snapshotId, "other-team", CancellationToken.None));
        Assert.NotNull(await registry.FindAsync("base", "other-team", CancellationToken.None));

        // A snapshot of the snapshot's sandbox stacks a third layer; its parent cannot go before it does.
        var third = await CreateAsync(daemon, $$"""{"templateID":"{{snapshotId}}","timeout":600}""");
        var c = Get<string>(third, "sandboxID");
        var nested = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{c}/snapshots");
        Assert.Equal(HttpStatusCode.Created, nested.Status);
        var nestedId = Get<string>(nested.Body!, "snapshotID");
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{c}")).Status);
        var parentRefused = AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{snapshotId}"));
        Assert.Contains(nestedId, parentRefused, StringComparison.Ordinal);
        Assert.Equal(3, (await registry.ResolveAsync(nestedId, "default", CancellationToken.None))!.Layers.Count);

        var layer = Path.Combine(registry.LayersDirectory, snapshotId);
        Assert.True(Directory.Exists(layer));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{nestedId}")).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{snapshotId}")).Status);
        Assert.False(Directory.Exists(layer));
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(daemon.Api, HttpMethod.Get, $"/templates/{snapshotId}")).Status);
        AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes", $$"""{"templateID":"{{snapshotId}}"}"""));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{a}")).Status);
    }

    [Fact]
    public async Task Bad_snapshot_and_template_requests_get_clear_errors()
    {
        _runtime = fixture.NewRuntime(_options);
        await using var daemon = await TestDaemon.StartAsync(_runtime, _state.Path, templates: Builtins);
        AssertError(HttpStatusCode.NotFound, await SendAsync(daemon.Api, HttpMethod.Post, "/sandboxes/nosuchsandbox0000000/snapshots"));
        Assert.Contains("nosuchsnapshot", AssertError(HttpStatusCode.BadRequest,
            await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"nosuchsnapshot"}""")), StringComparison.Ordinal);
        AssertError(HttpStatusCode.NotFound, await SendAsync(daemon.Api, HttpMethod.Delete, "/templates/nosuchtemplate"));
        AssertError(HttpStatusCode.NotFound, await SendAsync(daemon.Api, HttpMethod.Get, "/templates/nosuchtemplate"));

        var created = await CreateAsync(daemon, """{"templateID":"base","timeout":120}""");
        var id = Get<string>(created, "sandboxID");
        AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/snapshots", """{"name":"../escape"}"""));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/snapshots", """{"name":"base"}"""));
        // base was recorded by the create: public, and not a team's to delete.
        AssertError(HttpStatusCode.Forbidden, await SendAsync(daemon.Api, HttpMethod.Delete, "/templates/base"));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        Assert.Empty(Directory.Exists(Path.Combine(_state.Path, "layers")) ? Directory.GetFileSystemEntries(Path.Combine(_state.Path, "layers")) : []);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        using var runtime = fixture.NewRuntime(_options);
        await RuncFixture.DestroyAllAsync(runtime);
        _runtime?.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
