using System.Net;
using System.Net.Http.Headers;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Native;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;
using Paddock.Daemon.Volumes;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Teams.TenantApi;

namespace Paddock.Daemon.Tests.Volumes;

/// <summary>
/// One volume's life through the real API on one tier: files written by one sandbox's user read by the next, a delete
/// refused while mounted, the size limit, the content API (with a symlink planted by the sandbox), another team kept out.
/// </summary>
internal static class VolumeScenario
{
    public static async Task RunAsync(TestDaemon daemon, string? isolation)
    {
        var created = await SendAsync(daemon.Api, HttpMethod.Post, "/volumes", """{"name":"work","sizeMB":32}""");
        Assert.True(created.Status == HttpStatusCode.Created, $"volume create answered {(int)created.Status}: {created.Body?.ToJsonString()}");
        var volumeId = Get<string>(created.Body!, "volumeID");
        var token = Get<string>(created.Body!, "token");
        Assert.Equal("work", Get<string>(created.Body!, "name"));
        AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Post, "/volumes", """{"name":"work"}"""));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(daemon.Api, HttpMethod.Post, "/volumes", """{"name":"../work"}"""));
        var listed = (await SendAsync(daemon.Api, HttpMethod.Get, "/volumes")).Body!.AsArray();
        Assert.Contains(listed, v => Get<string>(v!, "volumeID") == volumeId && Get<string>(v!, "name") == "work");
        Assert.Equal(token, Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, $"/volumes/{volumeId}")).Body!, "token"));

        var tier = isolation is null ? "" : $$""","isolation":"{{isolation}}" """;
        var create = $$"""{"templateID":"base","timeout":300,"volumeMounts":[{"name":"work","path":"/mnt/work"}]{{tier}}}""";

        // The first sandbox's default user writes; the file is the sandbox user's on the host too (one remap range).
        var first = await CreateAsync(daemon, create);
        var (firstId, firstToken) = (Get<string>(first, "sandboxID"), Get<string>(first, "envdAccessToken"));
        var (exit, stdout) = await DaemonCommands.RunAsync(daemon, firstId, firstToken, "echo from-first > /mnt/work/note && id -u && stat -c %u /mnt/work/note");
        Assert.True(exit == 0, stdout);
        Assert.Equal("1000\n1000\n", stdout);
        var detail = (await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{firstId}")).Body!;
        Assert.Equal("/mnt/work", detail["volumeMounts"]![0]!["path"]!.GetValue<string>());
        var data = daemon.Services.GetRequiredService<VolumeManager>().Disks.DataOf(volumeId);
        Assert.Equal(101000u, Files.Stat(Path.Combine(data, "note")).Uid);

        var busy = AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Delete, $"/volumes/{volumeId}"));
        Assert.Contains(firstId, busy, StringComparison.Ordinal);

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{firstId}")).Status);
        await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

        // The content API, with the volume's token: a file written there is the next sandbox's.
        using var content = new HttpClient { BaseAddress = daemon.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        content.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using (var put = await content.PutAsync($"/volumecontent/{volumeId}/file?path=/from-api.txt&mode=420", new ByteArrayContent("from-api\n"u8.ToArray())))
        {
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        }

        var second = await CreateAsync(daemon, create);
        var (secondId, secondToken) = (Get<string>(second, "sandboxID"), Get<string>(second, "envdAccessToken"));
        (exit, stdout) = await DaemonCommands.RunAsync(daemon, secondId, secondToken, "cat /mnt/work/note /mnt/work/from-api.txt && echo more >> /mnt/work/note");
        Assert.True(exit == 0, stdout);
        Assert.Equal("from-first\nfrom-api\n", stdout);

        // The size limit is the volume's: 64 MiB do not fit in 32.
        (exit, stdout) = await DaemonCommands.RunAsync(daemon, secondId, secondToken,
            "dd if=/dev/zero of=/mnt/work/big bs=1M count=64 2>&1; echo exit=$?; rm -f /mnt/work/big");
        Assert.Contains("No space left on device", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("exit=0", stdout, StringComparison.Ordinal);

        // Symlinks a sandbox plants resolve inside the volume for the daemon, never to the host's files.
        (exit, stdout) = await DaemonCommands.RunAsync(daemon, secondId, secondToken, "ln -s /etc/hostname /mnt/work/evil && ln -s / /mnt/work/up");
        Assert.True(exit == 0, stdout);
        Assert.Equal("from-first\nmore\n", await content.GetStringAsync($"/volumecontent/{volumeId}/file?path=note"));
        using (var evil = await content.GetAsync($"/volumecontent/{volumeId}/file?path=evil"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, evil.StatusCode);
        }
        using (var up = await content.GetAsync($"/volumecontent/{volumeId}/file?path=up/etc/hostname"))
        {
            Assert.Equal(HttpStatusCode.NotFound, up.StatusCode);
        }
        using (var dots = await content.GetAsync($"/volumecontent/{volumeId}/file?path=../../../etc/hostname"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, dots.StatusCode);
        }
        var entries = await content.GetStringAsync($"/volumecontent/{volumeId}/dir?path=/");
        Assert.Contains("\"name\":\"evil\",\"path\":\"/evil\",\"type\":\"symlink\"", entries, StringComparison.Ordinal);
        Assert.Contains("\"target\":\"/etc/hostname\"", entries, StringComparison.Ordinal);
        using (var removed = await content.DeleteAsync($"/volumecontent/{volumeId}/path?path=up"))
        {
            Assert.Equal(HttpStatusCode.NoContent, removed.StatusCode);
        }
        Assert.True(File.Exists("/etc/hostname"), "removing a symlink to / removed the link, not the host's files");
        using (var wrong = new HttpClient { BaseAddress = daemon.BaseAddress })
        {
            wrong.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", "not-the-token");
            using var refused = await wrong.GetAsync($"/volumecontent/{volumeId}/file?path=note");
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        // Another team neither sees nor mounts it.
        var (_, _, other) = await TeamWithClientAsync(daemon);
        using (other)
        {
            AssertError(HttpStatusCode.NotFound, await SendAsync(other, HttpMethod.Get, $"/volumes/{volumeId}"));
            AssertError(HttpStatusCode.NotFound, await SendAsync(other, HttpMethod.Delete, $"/volumes/{volumeId}"));
            Assert.Empty((await SendAsync(other, HttpMethod.Get, "/volumes")).Body!.AsArray());
            var refused = AssertError(HttpStatusCode.BadRequest, await SendAsync(other, HttpMethod.Post, "/v2/sandboxes", create));
            Assert.Contains("no volume named 'work'", refused, StringComparison.Ordinal);
        }

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{secondId}")).Status);
        await daemon.Manager.WaitForTeardownsAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/volumes/{volumeId}")).Status);
        AssertError(HttpStatusCode.NotFound, await SendAsync(daemon.Api, HttpMethod.Get, $"/volumes/{volumeId}"));
        Assert.False(Directory.Exists(Path.GetDirectoryName(data)), "the volume's image and mount are gone with it");
    }

    /// <summary>Unmounts whatever a failed test left under the daemon's volumes directory (never deleting through a mount).</summary>
    public static void Cleanup(string stateDir)
    {
        foreach (var mount in MountTable.Under(Path.Combine(stateDir, "volumes")))
        {
            Mounts.Unmount(mount, Mounts.MNT_DETACH);
        }
    }
}
