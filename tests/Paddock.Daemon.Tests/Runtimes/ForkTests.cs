using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// Fork on the gVisor tier (issue 15): one capture of a running sandbox, copies restored from it with its memory,
/// processes and files, each on its own layer and link; the source keeps running; nothing is left after, also when a
/// fork was interrupted.
/// </summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorForkTests(GvisorFixture fixture)
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(120);

    // A server whose answer lives only in its memory: a token drawn at its start (never written anywhere) and a count of
    // the requests it served. A copy that answers with the source's token and goes on counting from the source's count
    // runs the source's process with its memory.
    private const string MemoryServer =
        "import http.server, secrets\n" +
        "token = secrets.token_hex(8)\n" +
        "served = 0\n" +
        "class H(http.server.BaseHTTPRequestHandler):\n" +
        "    def do_GET(self):\n" +
        "        global served\n" +
        "        served += 1\n" +
        "        body = f'{token} {served}'.encode()\n" +
        "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n" +
        "    def log_message(self, *a): pass\n" +
        "http.server.HTTPServer(('0.0.0.0', 8000), H).serve_forever()\n";

    [GvisorFact]
    public async Task Copies_have_the_sources_memory_processes_and_files_each_on_its_own_and_the_source_keeps_running()
    {
        var before = fixture.Footprint();
        var source = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Base), TestEnvironment.Timeout(Long));
        var copyIds = new[] { "f-" + Guid.NewGuid().ToString("N")[..12], "f-" + Guid.NewGuid().ToString("N")[..12] };
        try
        {
            var setup = await GvisorPauseTests.Run(fixture.Runtime, source.SandboxId,
                "cat > /tmp/server.py <<'EOF'\n" + MemoryServer + "EOF\n" +
                "sleep 3600 >/dev/null 2>&1 & echo $! > /tmp/sleep.pid; " +
                "python3 /tmp/server.py >/dev/null 2>&1 & " +
                "echo before-fork > /home/user/note; cat /tmp/sleep.pid");
            Assert.True(setup.ExitCode == 0, setup.ToString());
            var sleepPid = setup.Stdout.Trim();
            var (token, served) = Parse(await HttpBodyAsync(fixture.Runtime, source.SandboxId));

            var copies = await fixture.Runtime.ForkAsync(source.SandboxId, copyIds, TestEnvironment.Timeout(Long));

            Assert.Equal(copyIds, copies.Select(c => c.SandboxId));
            foreach (var copy in copies)
            {
                Assert.True(copy.Sandbox is not null, copy.Error);
            }
            Assert.Empty(Directory.Exists(fixture.Options.ForksDirectory) ? Directory.EnumerateFileSystemEntries(fixture.Options.ForksDirectory) : []);
            // The source: same Sentry, still serving from its own memory.
            Assert.Contains(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == source.SandboxId && s.HostPid == source.HostPid);
            Assert.Equal((token, served + 1), Parse(await HttpBodyAsync(fixture.Runtime, source.SandboxId)));

            var addresses = new HashSet<string>(StringComparer.Ordinal);
            foreach (var id in copyIds)
            {
                // The same process with the same memory: the token, and the count going on from the capture's.
                Assert.Equal((token, served + 1), Parse(await HttpBodyAsync(fixture.Runtime, id)));
                var state = await GvisorPauseTests.Run(fixture.Runtime, id, $"cat /proc/{sleepPid}/comm; cat /home/user/note");
                Assert.True(state.ExitCode == 0, state.ToString());
                Assert.Equal("sleep\nbefore-fork\n", state.Stdout);
                addresses.Add(fixture.Runtime.Network.Find(id)!.SandboxAddress.ToString());
            }
            addresses.Add(fixture.Runtime.Network.Find(source.SandboxId)!.SandboxAddress.ToString());
            Assert.Equal(3, addresses.Count);

            // Each copy's files are its own.
            Assert.Equal(0, (await GvisorPauseTests.Run(fixture.Runtime, copyIds[0], "echo in-copy-0 > /home/user/note")).ExitCode);
            Assert.Equal("before-fork\n", (await GvisorPauseTests.Run(fixture.Runtime, source.SandboxId, "cat /home/user/note")).Stdout);
            Assert.Equal("before-fork\n", (await GvisorPauseTests.Run(fixture.Runtime, copyIds[1], "cat /home/user/note")).Stdout);
            Assert.Equal("in-copy-0\n", (await GvisorPauseTests.Run(fixture.Runtime, copyIds[0], "cat /home/user/note")).Stdout);
        }
        finally
        {
            foreach (var id in copyIds)
            {
                await fixture.Runtime.DestroyAsync(id, TestEnvironment.Timeout(Long));
            }
            await fixture.Runtime.DestroyAsync(source.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    [GvisorFact]
    public async Task A_fork_into_an_id_in_use_fails_for_that_copy_alone()
    {
        await using var source = await fixture.StartAsync(fixture.Spec(fixture.Busybox));
        await using var other = await fixture.StartAsync(fixture.Spec(fixture.Busybox));
        var fresh = "f-" + Guid.NewGuid().ToString("N")[..12];
        try
        {
            var copies = await fixture.Runtime.ForkAsync(source.Id, [other.Id, fresh], TestEnvironment.Timeout(Long));
            Assert.Null(copies[0].Sandbox);
            Assert.Contains("exists already", copies[0].Error, StringComparison.Ordinal);
            Assert.NotNull(copies[1].Sandbox);
            // The sandbox whose id was asked for again is untouched.
            Assert.Equal(0, (await other.RunAsync("true")).ExitCode);
            Assert.Equal(0, (await GvisorPauseTests.Run(fixture.Runtime, fresh, "true")).ExitCode);
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(fresh, TestEnvironment.Timeout(Long));
        }
    }

    [GvisorFact]
    public async Task What_a_daemon_killed_mid_fork_leaves_is_removed_by_the_next_instance_and_the_source_runs_again()
    {
        var before = fixture.Footprint();
        var source = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        var half = "f-" + Guid.NewGuid().ToString("N")[..12];
        var running = fixture.Footprint();
        try
        {
            // What a SIGKILL during the capture leaves: the source held by runsc pause, a capture directory with a
            // partial image; and of a copy being made: its directory with a mounted disk and a network namespace.
            var runsc = new Daemon.Runtimes.Gvisor.RunscCli(fixture.Options);
            await runsc.PauseAsync(source.SandboxId, TestEnvironment.Timeout(Long));
            var capture = Path.Combine(fixture.Options.ForksDirectory, source.SandboxId + ".deadbeef");
            Directory.CreateDirectory(Path.Combine(capture, "image"));
            await File.WriteAllTextAsync(Path.Combine(capture, "image", "checkpoint.img"), "half");
            var halfLayout = new SandboxLayout(fixture.Options, half);
            Directory.CreateDirectory(halfLayout.Directory);
            await SandboxDisk.CreateAsync(halfLayout.DiskImage, halfLayout.DiskMount, 64L << 20, 4096, TestEnvironment.Timeout(Long));
            using (var namespaces = new NetworkNamespaces())
            {
                namespaces.Create(halfLayout.NetnsFile);
            }
            Assert.NotEqual(running, fixture.Footprint());

            using var restarted = fixture.NewRuntime();
            var removed = await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long));
            Assert.Contains(half, removed);
            Assert.DoesNotContain(source.SandboxId, removed);
            Assert.False(Directory.Exists(capture), "the capture is removed");
            // The source runs again: it answers a command.
            Assert.Equal("up\n", (await GvisorPauseTests.Run(restarted, source.SandboxId, "echo up")).Stdout);
            // Nothing of the half-made copy is left: what is there is the running source's (its process count aside,
            // which its Sentry's threads change).
            Assert.Equal(running with { Processes = 0 }, fixture.Footprint() with { Processes = 0 });
            await restarted.DestroyAsync(source.SandboxId, TestEnvironment.Timeout(Long));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(half, TestEnvironment.Timeout(Long));
            await fixture.Runtime.DestroyAsync(source.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    private static (string Token, int Served) Parse(string body)
    {
        var parts = body.Trim().Split(' ');
        return (parts[0], int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static async Task<string> HttpBodyAsync(ISandboxRuntime runtime, string id)
    {
        var response = await GvisorPauseTests.HttpGetAsync(runtime, id, 8000, "/");
        Assert.StartsWith("HTTP/1.0 200", response, StringComparison.Ordinal);
        return response[(response.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
    }
}
