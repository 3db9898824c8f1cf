using System.Net;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Runc;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Runtimes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Api;

/// <summary>
/// Memory snapshots (issue 15) on the real daemon and the real gVisor tier: <c>POST /sandboxes/{id}/snapshots</c> keeps
/// the sandbox's memory too, and each sandbox created from the template is a restore of it: the processes started
/// before the snapshot run in it (a background sleep, a Python server whose answer lives only in its memory), its files
/// are there, it has its own id, access token and variables, and it is independent of the others and of the source,
/// which may be gone by then. On runc (a second tier of the same daemon) the template starts afresh on its files
/// only. Deleting the template removes the memory image.
/// </summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorMemorySnapshotTests(GvisorFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    private RuncRuntime? _runc;

    // A server whose answer is a token drawn at its start and kept only in its memory (never written to a file).
    private const string MemoryServer =
        "import http.server, secrets\n" +
        "token = secrets.token_hex(8)\n" +
        "class H(http.server.BaseHTTPRequestHandler):\n" +
        "    def do_GET(self):\n" +
        "        body = token.encode()\n" +
        "        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n" +
        "    def log_message(self, *a): pass\n" +
        "http.server.HTTPServer(('127.0.0.1', 8000), H).serve_forever()\n";

    // Bounded: 50 tries 0.1 s apart for the server to listen.
    private const string AskServer =
        "python3 -c \"import urllib.request, time\n" +
        "for i in range(50):\n" +
        "    try:\n" +
        "        print(urllib.request.urlopen('http://127.0.0.1:8000', timeout=2).read().decode()); break\n" +
        "    except OSError: time.sleep(0.1)\n" +
        "\"";

    [GvisorFact]
    public async Task A_sandbox_from_a_memory_snapshot_runs_the_snapshots_processes_with_its_own_identity_and_files()
    {
        _runc = new RuncRuntime(RuncFixture.OwnOptions("daemon-memsnap", "paddock-memsnap-test"), fixture.AgentBinary, NullLogger<RuncRuntime>.Instance);
        // gVisor first: the default tier, and the snapshot's (a snapshot keeps its sandbox's tier).
        await using var daemon = await TestDaemon.StartAsync([SandboxTier.Of(fixture.Runtime), SandboxTier.Of(_runc)], _state.Path, templates: new BaseOnly(fixture.Base));
        var first = await CreateAsync(daemon, """{"templateID":"base","timeout":600}""");
        var a = Get<string>(first, "sandboxID");
        var tokenA = Get<string>(first, "envdAccessToken");
        var (exit, sleepPid) = await DaemonCommands.RunAsync(daemon, a, tokenA,
            "cat > /tmp/server.py <<'EOF'\n" + MemoryServer + "EOF\n" +
            "nohup python3 /tmp/server.py >/dev/null 2>&1 & " +
            "nohup sleep 3600 >/dev/null 2>&1 & echo $!; echo before-snapshot > /home/user/note");
        Assert.Equal(0, exit);
        sleepPid = sleepPid.Trim();
        var (_, serverToken) = await DaemonCommands.RunAsync(daemon, a, tokenA, AskServer);
        Assert.Matches("^[0-9a-f]{16}\n$", serverToken);

        var created = await SendAsync(daemon.Api, HttpMethod.Post, $"/sandboxes/{a}/snapshots", """{"name":"warm"}""");
        Assert.True(created.Status == HttpStatusCode.Created, $"snapshot answered {(int)created.Status}: {created.Body?.ToJsonString()}");
        var snapshotId = Get<string>(created.Body!, "snapshotID");
        Assert.True(Get<bool>(created.Body!, "memory"));
        var registry = daemon.Services.GetRequiredService<TemplateRegistry>();
        var image = MemoryImages.PathFor(Path.Combine(registry.LayersDirectory, snapshotId));
        Assert.True(Directory.Exists(image));
        var detail = await SendAsync(daemon.Api, HttpMethod.Get, $"/templates/{snapshotId}");
        Assert.True(Get<bool>(detail.Body!, "memory"));

        // The source runs on, and what it writes now is not in the snapshot.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, a, tokenA, "echo after > /home/user/note")).ExitCode);

        var b = await FromSnapshotAsync("b");
        // The source may be gone: the template holds all a restore needs.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{a}")).Status);
        var c = await FromSnapshotAsync("c");
        Assert.Equal(3, new HashSet<string>([a, b.Id, c.Id]).Count);
        Assert.Equal(3, new HashSet<string>([tokenA, b.Token, c.Token]).Count);

        // Each one's files are its own.
        Assert.Equal(0, (await DaemonCommands.RunAsync(daemon, b.Id, b.Token, "echo in-b > /home/user/note")).ExitCode);
        Assert.Equal("before-snapshot\n", (await DaemonCommands.RunAsync(daemon, c.Id, c.Token, "cat /home/user/note")).Stdout);
        Assert.Equal("in-b\n", (await DaemonCommands.RunAsync(daemon, b.Id, b.Token, "cat /home/user/note")).Stdout);

        // On runc, which cannot restore memory: the snapshot's files, none of its processes.
        var onRunc = await CreateAsync(daemon, """{"templateID":"warm","timeout":600,"isolation":"runc"}""");
        var r = Get<string>(onRunc, "sandboxID");
        Assert.Equal("runc", Get<string>((await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{r}")).Body!, "isolation"));
        var (_, runcSeen) = await DaemonCommands.RunAsync(daemon, r, Get<string>(onRunc, "envdAccessToken"),
            "cat /home/user/note; cat /proc/[0-9]*/comm 2>/dev/null | grep -c -x -e sleep -e python3");
        Assert.Equal("before-snapshot\n0\n", runcSeen);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{r}")).Status);

        // In use: kept; once unused, deleting the template removes its memory image with its layer.
        AssertError(HttpStatusCode.Conflict, await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{snapshotId}"));
        foreach (var id in (string[])[b.Id, c.Id])
        {
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        }
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(daemon.Api, HttpMethod.Delete, $"/templates/{snapshotId}")).Status);
        Assert.False(Directory.Exists(image));
        Assert.False(Directory.Exists(Path.Combine(registry.LayersDirectory, snapshotId)));

        async Task<(string Id, string Token)> FromSnapshotAsync(string tag)
        {
            var sandbox = await CreateAsync(daemon, $$$"""{"templateID":"warm","timeout":600,"envVars":{"MEMSNAP_TAG":"{{{tag}}}"}}""");
            var id = Get<string>(sandbox, "sandboxID");
            var token = Get<string>(sandbox, "envdAccessToken");
            Assert.Equal(snapshotId, Get<string>(sandbox, "templateID"));
            // The processes of the snapshot, with their memory: the same sleep, the server's token.
            var (code, seen) = await DaemonCommands.RunAsync(daemon, id, token,
                $"cat /proc/{sleepPid}/comm; cat /home/user/note; echo $MEMSNAP_TAG; {AskServer}");
            Assert.True(code == 0, seen);
            Assert.Equal($"sleep\nbefore-snapshot\n{tag}\n{serverToken}", seen);
            // The source's token opens nothing here.
            var refused = await DaemonCommands.RunAsync(daemon, id, tokenA, "true").ContinueWith(t => t.IsFaulted || t.Result.ExitCode != 0, TaskScheduler.Default);
            Assert.True(refused);
            return (id, token);
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
        _state.Dispose();
    }
}
