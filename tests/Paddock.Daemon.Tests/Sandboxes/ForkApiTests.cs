using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>
/// The daemon's side of a fork (POST /sandboxes/{id}/fork) over a tier double whose copies are real agents holding the
/// source's token (as a restored agent does): E2B's answer shape, a new id, token and deadline per copy (the source's
/// token no longer opens a copy), copies past the host's capacity or whose restore failed reported alone, records of
/// failed copies ended and their share given back, an ended source refused whole (a paused one: fork.test.mjs).
/// </summary>
public sealed class ForkApiTests : IDisposable
{
    private readonly TempDir _state = new();

    public void Dispose() => _state.Dispose();

    [Fact]
    public async Task Each_copy_gets_its_own_id_token_and_deadline_and_a_copy_that_cannot_start_fails_alone()
    {
        await using var runtime = new LocalAgentRuntime { Forkable = true };
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path, o => o with { MaxSandboxes = 3 });
        var created = await CreateAsync(daemon, """{"templateID":"base","metadata":{"purpose":"fork-test"},"timeout":600}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");

        // Three asked, room for two: the third is a 429 entry of its own, the rest of the answer is still a 201.
        var (status, body, _) = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", """{"count":3,"timeout":120}""");
        Assert.Equal(HttpStatusCode.Created, status);
        var results = body!.AsArray();
        Assert.Equal(3, results.Count);
        var copies = results.Take(2).Select(r => r!["sandbox"]!).ToList();
        Assert.All(results.Take(2), r => Assert.Null(r!["error"]));
        Assert.Null(results[2]!["sandbox"]);
        Assert.Equal(429, Get<int>(results[2]!["error"]!, "code"));
        Assert.Contains("max-sandboxes", Get<string>(results[2]!["error"]!, "message"), StringComparison.OrdinalIgnoreCase);

        var ids = copies.Select(c => Get<string>(c, "sandboxID")).ToList();
        var tokens = copies.Select(c => Get<string>(c, "envdAccessToken")).ToList();
        Assert.Equal(3, ids.Append(id).Distinct().Count());
        Assert.Equal(3, tokens.Append(token).Distinct().Count());
        for (var i = 0; i < ids.Count; i++)
        {
            Assert.Equal(Get<string>(created, "templateID"), Get<string>(copies[i], "templateID"));
            // The copy's agent took its own token (POST /init) and no longer takes the source's.
            Assert.Equal((0, "copy\n"), await DaemonCommands.RunAsync(daemon, ids[i], tokens[i], "echo copy"));
            await Assert.ThrowsAsync<IOException>(() => DaemonCommands.RunAsync(daemon, ids[i], token, "echo source-token"));
            var detail = (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{ids[i]}")).Body!;
            Assert.Equal("running", Get<string>(detail, "state"));
            Assert.Equal("fork-test", Get<string>(detail["metadata"]!, "purpose"));
            // Its own deadline: the fork's 120 s, not the source's 600 s.
            Assert.True(DateTimeOffset.Parse(Get<string>(detail, "endAt"), System.Globalization.CultureInfo.InvariantCulture)
                < DateTimeOffset.Parse(Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "endAt"), System.Globalization.CultureInfo.InvariantCulture));
        }
        // The source still answers with its own token.
        Assert.Equal((0, "source\n"), await DaemonCommands.RunAsync(daemon, id, token, "echo source"));
        Assert.Equal(3, daemon.Manager.Reserved);

        // A copy whose restore fails is an error entry; its record ends and its share goes back.
        foreach (var copy in ids)
        {
            Assert.True(await daemon.Manager.KillAsync(copy, "test"));
        }
        await daemon.Manager.WaitForTeardownsAsync(CancellationToken.None);
        runtime.FailCopyAt = 0;
        var second = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", """{"count":2}""");
        Assert.Equal(HttpStatusCode.Created, second.Status);
        var failed = second.Body!.AsArray()[0]!;
        Assert.Equal(500, Get<int>(failed["error"]!, "code"));
        Assert.Contains("runsc restore failed", Get<string>(failed["error"]!, "message"), StringComparison.Ordinal);
        var running = Get<string>(second.Body!.AsArray()[1]!["sandbox"]!, "sandboxID");
        Assert.True(runtime.IsAlive(running));
        Assert.Equal(2, daemon.Manager.Reserved);
        var ended = await daemon.Services.GetRequiredService<ISandboxStore>().ListAsync([SandboxState.Killed], CancellationToken.None);
        Assert.Contains(ended, r => r.EndReason?.Contains("runsc restore failed", StringComparison.Ordinal) == true);
        Assert.True(await daemon.Manager.KillAsync(running, "test"));
        Assert.True(await daemon.Manager.KillAsync(id, "test"));
    }

    [Fact]
    public async Task The_default_count_is_one_and_a_killed_source_is_a_404()
    {
        await using var runtime = new LocalAgentRuntime { Forkable = true };
        await using var daemon = await TestDaemon.StartAsync(runtime, _state.Path);
        var id = Get<string>(await CreateAsync(daemon), "sandboxID");
        var (status, body, _) = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork");
        Assert.Equal(HttpStatusCode.Created, status);
        var copy = Get<string>(Assert.Single(body!.AsArray())!["sandbox"]!, "sandboxID");
        Assert.True(await daemon.Manager.KillAsync(copy, "test"));
        Assert.True(await daemon.Manager.KillAsync(id, "test"));
        var gone = AssertError(HttpStatusCode.NotFound, await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", "{}"));
        Assert.Contains(id, gone, StringComparison.Ordinal);
    }
}
