using System.Net;

namespace Paddock.Security.Tests;

/// <summary>
/// Path traversal and symlinks through every file API of the agent (GET/POST /files and filesystem.Filesystem),
/// reached through the daemon: whatever a path or a link inside the sandbox says, it resolves inside the sandbox's
/// root, so the host's canary (a path that exists only on the host) is never read, written, moved or removed. And the
/// daemon's own walks of what a sandbox wrote (metering its writable layer) never follow a link it left there.
/// </summary>
[Collection(BatteryCollection.Name)]
public sealed class FileApiTests(BatteryFixture fixture)
{
    private TestSandbox Attacker => fixture.Attacker;

    [Fact]
    public async Task Download_by_traversal_or_symlink_never_reads_a_host_file()
    {
        await ResetSandboxCopyOfCanaryAsync();
        var link = await Attacker.RunAsync($"ln -sfn {fixture.CanaryFile} /home/user/to-host && ln -sfn / /home/user/to-root && echo linked");
        Assert.Equal("linked\n", link.Stdout);

        foreach (var path in (string[])[
            fixture.CanaryFile,
            "../../../../../../.." + fixture.CanaryFile,
            "/home/user/../../../../.." + fixture.CanaryFile,
            "/home/user/to-host",
            "/home/user/to-root" + fixture.CanaryFile,
            "/proc/1/root" + fixture.CanaryFile,
            "/proc/self/cwd/../../../../.." + fixture.CanaryFile])
        {
            foreach (var user in (string[])["user", "root"])
            {
                var (status, body) = await Attacker.DownloadAsync(path, user);
                Assert.True(status == HttpStatusCode.NotFound, $"GET /files {path} as {user}: {(int)status} {body}");
                Assert.DoesNotContain(BatteryFixture.CanaryContent, body, StringComparison.Ordinal);
            }
        }
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task Uploads_by_traversal_or_symlink_land_inside_the_sandbox()
    {
        await ResetSandboxCopyOfCanaryAsync();
        var link = await Attacker.RunAsync($"ln -sfn {fixture.CanaryDirectory} /home/user/to-host-dir && ln -sfn {fixture.CanaryFile} /home/user/to-host-file && echo linked");
        Assert.Equal("linked\n", link.Stdout);

        foreach (var path in (string[])[
            fixture.CanaryFile,
            "../../../../../.." + fixture.CanaryFile,
            "/home/user/to-host-file",
            "/home/user/to-host-dir/canary.txt",
            "/home/user/to-host-dir/new-file"])
        {
            var (status, body) = await Attacker.UploadAsync(path, "written by the sandbox", user: "root");
            Assert.True(status == HttpStatusCode.OK, $"POST /files {path}: {(int)status} {body}");
        }

        // Everything went to the sandbox's own copy of that path (made by the upload), none to the host's.
        var inside = await Attacker.RunAsync($"cat {fixture.CanaryFile}; echo; ls {fixture.CanaryDirectory}", user: "root");
        Assert.Equal($"written by the sandbox\ncanary.txt\nnew-file\n", inside.Stdout);
        Assert.Equal(BatteryFixture.CanaryContent, await File.ReadAllTextAsync(fixture.CanaryFile));
        Assert.False(File.Exists(Path.Combine(fixture.CanaryDirectory, "new-file")));
        await Attacker.RunAsync($"rm -rf {fixture.CanaryDirectory}", user: "root");
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task Filesystem_calls_through_traversal_or_symlinks_never_touch_the_host()
    {
        await ResetSandboxCopyOfCanaryAsync();
        var link = await Attacker.RunAsync($"ln -sfn {fixture.CanaryDirectory} /home/user/to-host-dir && ln -sfn / /home/user/to-root && echo x > /home/user/mine && echo linked");
        Assert.Equal("linked\n", link.Stdout);
        var traversal = "/home/user/../../../../.." + fixture.CanaryFile;

        var stat = await Attacker.UnaryAsync("filesystem.Filesystem/Stat", $$"""{"path":"{{traversal}}"}""", "root");
        Assert.True(stat.Status == HttpStatusCode.NotFound, "Stat: " + stat);
        var statLink = await Attacker.UnaryAsync("filesystem.Filesystem/Stat", """{"path":"/home/user/to-host-dir/canary.txt"}""", "root");
        Assert.True(statLink.Status == HttpStatusCode.NotFound, "Stat through a link: " + statLink);

        // ListDir of a link to / lists the sandbox's root, which has no host canary directory.
        var list = await Attacker.UnaryAsync("filesystem.Filesystem/ListDir", """{"path":"/home/user/to-root/tmp","depth":1}""", "root");
        Assert.True(list.Status == HttpStatusCode.OK, "ListDir: " + list);
        var names = System.Text.Json.Nodes.JsonNode.Parse(list.Body)!["entries"]!.AsArray().Select(e => (string?)e!["name"]).ToList();
        Assert.NotEmpty(names);
        Assert.DoesNotContain(Path.GetFileName(fixture.CanaryDirectory), names);

        // Remove of a missing path succeeds (envd removes like Go's os.RemoveAll); what matters is the host's file.
        var remove = await Attacker.UnaryAsync("filesystem.Filesystem/Remove", $$"""{"path":"{{traversal}}"}""", "root");
        Assert.True(remove.Status is HttpStatusCode.OK or HttpStatusCode.NotFound, "Remove: " + remove);
        var removeLink = await Attacker.UnaryAsync("filesystem.Filesystem/Remove", """{"path":"/home/user/to-host-dir/canary.txt"}""", "root");
        Assert.True(removeLink.Status is HttpStatusCode.OK or HttpStatusCode.NotFound, "Remove through a link: " + removeLink);
        Assert.Equal(BatteryFixture.CanaryContent, await File.ReadAllTextAsync(fixture.CanaryFile));

        var moveOut = await Attacker.UnaryAsync("filesystem.Filesystem/Move", $$"""{"source":"/home/user/mine","destination":"{{traversal}}"}""", "root");
        var moveIn = await Attacker.UnaryAsync("filesystem.Filesystem/Move", $$"""{"source":"{{traversal}}","destination":"/home/user/stolen"}""", "root");
        Assert.NotEqual(HttpStatusCode.InternalServerError, moveOut.Status);
        // The first move made that path inside the sandbox (with its parents), so the second may find it: what it
        // brings back must be the sandbox's own file, never the host's canary.
        Assert.True(moveIn.Status is HttpStatusCode.OK or HttpStatusCode.NotFound, "Move from the host path: " + moveIn);
        if (moveIn.Status == HttpStatusCode.OK)
        {
            Assert.Equal("x\n", (await Attacker.RunAsync("cat /home/user/stolen", user: "root")).Stdout);
        }

        var mkdir = await Attacker.UnaryAsync("filesystem.Filesystem/MakeDir", """{"path":"/home/user/to-host-dir/made-by-sandbox"}""", "root");
        Assert.NotEqual(HttpStatusCode.InternalServerError, mkdir.Status);

        Assert.False(Directory.Exists(Path.Combine(fixture.CanaryDirectory, "made-by-sandbox")));
        Assert.False(File.Exists(Path.Combine(fixture.CanaryDirectory, "mine")));
        Assert.Equal(BatteryFixture.CanaryContent, await File.ReadAllTextAsync(fixture.CanaryFile));
        await Attacker.RunAsync($"rm -rf {fixture.CanaryDirectory}", user: "root");
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task A_symlink_race_never_serves_a_host_file()
    {
        // Root flips /tmp/race between a readable file and links that point out of the sandbox (the host canary's
        // path, by absolute path and by traversal) while downloads run: a resolution that left the sandbox's root
        // for a moment would serve the host's canary. Bounded: 10 s, 200 downloads; the flipper ends by itself.
        // (Not user against root: the agent serves the whole sandbox to any caller, as envd does, and a caller may
        // name user "root"; the boundary under test is the sandbox's root.)
        await ResetSandboxCopyOfCanaryAsync();
        var flipper = await Attacker.RunAsync(
            $"echo public > /tmp/race-file && (setsid timeout 15 sh -c 'while :; do ln -sfn {fixture.CanaryFile} /tmp/race; ln -sfn /tmp/race-file /tmp/race; ln -sfn ../../../../..{fixture.CanaryFile} /tmp/race; done' >/dev/null 2>&1 &) && echo flipping",
            user: "root");
        Assert.Equal("flipping\n", flipper.Stdout);
        var served = new Dictionary<HttpStatusCode, int>();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        for (var i = 0; i < 200 && DateTime.UtcNow < deadline; i++)
        {
            var (status, body) = await Attacker.DownloadAsync("/tmp/race", "root");
            Assert.DoesNotContain(BatteryFixture.CanaryContent, body, StringComparison.Ordinal);
            served[status] = served.GetValueOrDefault(status) + 1;
        }
        // The race really ran: some tries got the readable file, some found the link's target missing.
        Assert.True(served.GetValueOrDefault(HttpStatusCode.OK) > 0, "never served the public file: " + string.Join(", ", served));
        Assert.True(served.GetValueOrDefault(HttpStatusCode.NotFound) > 0, "never hit a link out of the sandbox: " + string.Join(", ", served));
        await fixture.AssertHostUnchangedAsync();
    }

    [Fact]
    public async Task Metering_the_writable_layer_never_walks_through_its_links_to_the_host()
    {
        // A host directory with 128 MiB on disk (preallocated): a walk that entered a link to it would count it as the
        // sandbox's. And a link to "/", through which /proc's links to roots make a walk that never ends.
        const long hostBytes = 128L << 20;
        var target = Directory.CreateTempSubdirectory("paddock-security-link-target-");
        try
        {
            using (new FileStream(Path.Combine(target.FullName, "allocated"), new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, PreallocationSize = hostBytes }))
            {
            }
            await using var victim = await TestSandbox.CreateAsync(fixture.Daemon, fixture.Http);
            var link = await victim.RunAsync($"ln -s {target.FullName} /home/user/to-host-dir && ln -s / /home/user/to-root && echo linked");
            Assert.Equal("linked\n", link.Stdout);

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var used = await victim.DiskUsedAsync(timeout.Token);
            Assert.True(used < hostBytes / 4, $"the sandbox's writable layer measured {used} bytes: the daemon counted what its links point at");
        }
        finally
        {
            target.Delete(recursive: true);
        }
        await fixture.AssertHostUnchangedAsync();
    }

    /// <summary>Removes the sandbox's own copy of the canary's path, which an upload test may have made.</summary>
    private async Task ResetSandboxCopyOfCanaryAsync() =>
        Assert.Equal(0, (await Attacker.RunAsync($"rm -rf {fixture.CanaryDirectory}", user: "root")).ExitCode);
}
