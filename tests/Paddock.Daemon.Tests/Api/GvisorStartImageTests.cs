using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// Start images (issue 15, point 5) on the real daemon and the real gVisor tier: a template whose start command writes
/// a marker (its pid and a timestamp in nanoseconds) and then serves it on a listener. Its first create runs the
/// command; once the daemon has made the template's start image in the background, each create is a restore of it:
/// the listener answers at once, the marker is the image's, the same in every such sandbox (the command did not run
/// again), and each has its own variables, files and access token. A runc create runs the command as before; a rebuilt
/// template (new layers) runs it again and gets a new image, which replaces the old; deleting the template removes it.
/// </summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorStartImageTests(GvisorFixture fixture) : IAsyncLifetime
{
    private const string StartCmd =
        "echo \"$$ $(date +%s%N) ${START_TAG:-none}\" > /tmp/started; exec python3 -m http.server 8000 --bind 127.0.0.1 --directory /tmp";

    private const string ReadyCmd = "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/started', timeout=1)\"";

    // One try, no retry: a restored listener answers at once, so a server that is still starting fails this.
    private const string AskOnce = "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/started', timeout=5).read().decode(), end='')\"";

    private readonly TempDir _state = new();
    private readonly TempDir _layer = new();
    private RuncRuntime? _runc;

    [GvisorFact]
    public async Task A_template_with_a_start_command_is_started_once_and_its_later_creates_restore_that_start()
    {
        _runc = new RuncRuntime(RuncFixture.OwnOptions("daemon-startimage", "paddock-startimage-test"), fixture.AgentBinary, NullLogger<RuncRuntime>.Instance);
        await using var daemon = await TestDaemon.StartAsync([SandboxTier.Of(fixture.Runtime), SandboxTier.Of(_runc)], _state.Path, templates: new BaseOnly(fixture.Base));
        var registry = daemon.Services.GetRequiredService<TemplateRegistry>();
        var images = daemon.Services.GetRequiredService<StartImages>();
        var templateId = "startimg-" + Guid.NewGuid().ToString("N")[..8];
        var version1 = new TemplateRecord
        {
            TemplateId = templateId,
            TeamId = Paddock.Daemon.Store.SandboxRecord.DefaultTeamId,
            Names = ["startimg"],
            Kind = TemplateKind.Build,
            Layers = [fixture.Base.RootfsPath],
            CreatedAt = DateTimeOffset.UtcNow,
            DefaultUser = fixture.Base.DefaultUser,
            StartCmd = StartCmd,
            ReadyCmd = ReadyCmd,
        };
        await registry.RegisterBuildAsync(version1, CancellationToken.None);

        // The first create runs the command in the client's sandbox (its variables reach it, as before).
        var a = await CreateAsync(daemon, """{"templateID":"startimg","timeout":600,"envVars":{"START_TAG":"a"}}""");
        var (aId, aToken) = (Get<string>(a, "sandboxID"), Get<string>(a, "envdAccessToken"));
        var markerA = await MarkerAsync(aId, aToken);
        Assert.EndsWith(" a", markerA);

        var image = await WaitForImageAsync();
        Assert.False(Directory.EnumerateDirectories(images.Root, ".tmp-*", SearchOption.AllDirectories).Any());

        var (bId, bToken, markerB) = await RestoredAsync();
        var (cId, cToken, markerC) = await RestoredAsync();
        // The image's start, not A's, and the same one in both: the command ran once, in the image's sandbox.
        Assert.NotEqual(markerA, markerB);
        Assert.Equal(markerB, markerC);
        Assert.EndsWith(" none", markerB);
        // A create with variables of its own runs the command with them (restored processes would not see them).
        var f = await CreateAsync(daemon, """{"templateID":"startimg","timeout":600,"envVars":{"START_TAG":"f"}}""");
        var (fId, fToken) = (Get<string>(f, "sandboxID"), Get<string>(f, "envdAccessToken"));
        Assert.EndsWith(" f", await MarkerAsync(fId, fToken));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{fId}")).Status);
        // The server the command started is that process, running in each restored sandbox.
        var serverPid = markerB.Split(' ')[0];
        Assert.Equal("python3\n", (await DaemonCommands.RunAsync(daemon, cId, cToken, $"cat /proc/{serverPid}/comm")).Stdout);
        // Each one's files are its own; another sandbox's token opens nothing.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, bId, bToken, "echo only-b > /tmp/only-b")).ExitCode);
        Assert.Equal("absent\n", (await DaemonCommands.RunAsync(daemon, cId, cToken, "cat /tmp/only-b 2>/dev/null || echo absent")).Stdout);
        foreach (var other in (string[])[aToken, bToken])
        {
            var refused = await DaemonCommands.RunAsync(daemon, cId, other, "true").ContinueWith(t => t.IsFaulted || t.Result.ExitCode != 0, TaskScheduler.Default);
            Assert.True(refused);
        }

        // runc cannot restore memory: its creates run the command, as before.
        var onRunc = await CreateAsync(daemon, """{"templateID":"startimg","timeout":600,"isolation":"runc"}""");
        var runcMarker = await MarkerAsync(Get<string>(onRunc, "sandboxID"), Get<string>(onRunc, "envdAccessToken"));
        Assert.NotEqual(markerB, runcMarker);

        // A rebuild (new layers) does not restore the old image: the command runs again, on the new files.
        Directory.CreateDirectory(Path.Combine(_layer.Path, "opt"));
        await File.WriteAllTextAsync(Path.Combine(_layer.Path, "opt", "startimg-version"), "2\n");
        var root = fixture.Base.IdMappingHostBase;
        foreach (var path in (string[])[_layer.Path, Path.Combine(_layer.Path, "opt"), Path.Combine(_layer.Path, "opt", "startimg-version")])
        {
            Files.ChangeOwner(path, root, root);
        }
        File.SetUnixFileMode(_layer.Path, (UnixFileMode)Convert.ToInt32("755", 8));
        await registry.RegisterBuildAsync(version1 with { Layers = [_layer.Path, fixture.Base.RootfsPath], CreatedAt = DateTimeOffset.UtcNow }, CancellationToken.None);
        var d = await CreateAsync(daemon, """{"templateID":"startimg","timeout":600}""");
        var (dId, dToken) = (Get<string>(d, "sandboxID"), Get<string>(d, "envdAccessToken"));
        var markerD = await MarkerAsync(dId, dToken);
        Assert.NotEqual(markerB, markerD);
        Assert.Equal("2\n", (await DaemonCommands.RunAsync(daemon, dId, dToken, "cat /opt/startimg-version")).Stdout);
        var image2 = await WaitForImageAsync(except: image);
        Assert.False(Directory.Exists(image));
        var (eId, eToken, markerE) = await RestoredAsync();
        Assert.NotEqual(markerD, markerE);
        Assert.Equal("2\n", (await DaemonCommands.RunAsync(daemon, eId, eToken, "cat /opt/startimg-version")).Stdout);

        // Deleted with the template, once nothing runs from it.
        foreach (var id in (string[])[aId, bId, cId, dId, eId, Get<string>(onRunc, "sandboxID")])
        {
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        }
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{templateId}")).Status);
        Assert.False(Directory.Exists(image2));
        Assert.Empty(Directory.EnumerateFileSystemEntries(images.Root));

        async Task<string> MarkerAsync(string id, string token)
        {
            var (exit, marker) = await DaemonCommands.RunAsync(daemon, id, token, AskOnce);
            Assert.True(exit == 0, marker);
            marker = marker.TrimEnd('\n');
            Assert.Matches("^[0-9]+ [0-9]+ [a-z]+$", marker);
            return marker;
        }

        async Task<(string Id, string Token, string Marker)> RestoredAsync()
        {
            var created = await SendAsync(daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"startimg","timeout":600}""");
            Assert.True(created.Status == HttpStatusCode.Created, $"create answered {(int)created.Status}: {created.Body?.ToJsonString()}");
            Assert.Contains("start-image", string.Join(",", created.Response.Headers.GetValues("Server-Timing")));
            var id = Get<string>(created.Body!, "sandboxID");
            var token = Get<string>(created.Body!, "envdAccessToken");
            // The listener answers at the first try, and the marker it serves is the file the sandbox has.
            var marker = await MarkerAsync(id, token);
            Assert.Equal(marker, (await DaemonCommands.RunAsync(daemon, id, token, "cat /tmp/started")).Stdout.TrimEnd('\n'));
            return (id, token, marker);
        }

        // Bounded: 240 looks 0.5 s apart (an image is one sandbox start, the command, its ready check and a checkpoint).
        async Task<string> WaitForImageAsync(string? except = null)
        {
            for (var i = 0; i < 240; i++)
            {
                var found = images.ImagesOf(templateId).Where(p => p != except).ToList();
                if (found.Count == 1 && images.ImagesOf(templateId).Count == 1)
                {
                    return found[0];
                }
                await Task.Delay(500);
            }
            throw new TimeoutException($"no start image of {templateId} after 120 s; there are: {string.Join(", ", images.ImagesOf(templateId))}");
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await fixture.DestroyRunningAsync();
        if (_runc is not null)
        {
            await RuncFixture.DestroyAllAsync(_runc);
            _runc.Dispose();
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _layer.Dispose();
        _state.Dispose();
    }
}
