using System.Net;
using System.Text.Json.Nodes;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using Paddock.Daemon.Tests.Teams;
using Paddock.Envd.Process;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Observability;

/// <summary>
/// The audit trail through the real daemon and proxy, over real agents (the local-process runtime double): what the
/// calls did, in order, with exit codes, still there after the kill, and for its own team only.
/// </summary>
public sealed class AuditTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() =>
        _daemon = await TestDaemon.StartAsync(_runtime, _state.Path, o => o with { AuditMaxEventsPerSandbox = 100 });

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    private static async Task<JsonArray> EventsAsync(HttpClient client, string id, string query = "")
    {
        var (status, body, _) = await SendAsync(client, HttpMethod.Get, $"/sandboxes/{id}/audit{query}");
        Assert.True(status == HttpStatusCode.OK, $"audit answered {(int)status}: {body?.ToJsonString()}");
        return body!["events"]!.AsArray();
    }

    [Fact]
    public async Task Commands_ptys_and_file_changes_are_recorded_in_order_kept_after_the_kill_and_hidden_from_other_teams()
    {
        var created = await CreateAsync(_daemon, """{"templateID":"base","timeout":120}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");

        var first = new StartRequest
        {
            Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", "echo hi" }, Cwd = "/tmp", Envs = { ["API_TOKEN"] = "hunter2", ["MODE"] = "x" } },
            Tag = "first",
        };
        Assert.Equal(0, await EnvdCalls.StartAsync(_daemon, id, token, first, user: "root"));
        Assert.Equal(3, await EnvdCalls.RunAsync(_daemon, id, token, "exit 3", proto: true));
        // Spelled the way the agent's routing also accepts (case, trailing slash): it must not slip past the audit.
        Assert.Equal(5, await EnvdCalls.StartAsync(_daemon, id, token,
            new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", "exit 5" } } }, path: "/PROCESS.process/start/"));
        Assert.Equal(4, await EnvdCalls.StartAsync(_daemon, id, token, new StartRequest
        {
            Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", "exit 4" } },
            Pty = new PTY { Size = new PTY.Types.Size { Cols = 80, Rows = 24 } },
        }));
        var dir = Path.Combine(_state.Path, "files");
        Directory.CreateDirectory(dir);
        var a = Path.Combine(dir, "a.txt");
        var b = Path.Combine(dir, "b.txt");
        Assert.Equal(200, await EnvdCalls.UploadAsync(_daemon, id, token, a, "hello"));
        Assert.Equal(200, await EnvdCalls.UnaryAsync(_daemon, id, token, "Move", $$"""{"source":"{{a}}","destination":"{{b}}"}"""));
        Assert.Equal(200, await EnvdCalls.UnaryAsync(_daemon, id, token, "Remove", $$"""{"path":"{{b}}"}"""));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}")).Status);

        // After the kill: the whole trail, in order.
        var events = await EventsAsync(_daemon.Api, id);
        Assert.Equal(
            ["process.start", "process.end", "process.start", "process.end", "process.start", "process.end", "pty.open", "pty.close", "file.write", "file.move", "file.remove"],
            events.Select(e => (string)e!["kind"]!).ToArray());
        var seqs = events.Select(e => (long)e!["seq"]!).ToList();
        Assert.Equal(seqs.Order().ToList(), seqs);
        Assert.Equal([0, 3, 5, 4], events.Where(e => (string)e!["kind"]! is "process.end" or "pty.close").Select(e => (int)e!["exitCode"]!).ToArray());
        var start = events[0]!;
        Assert.Equal("/bin/sh", (string)start["cmd"]!);
        Assert.Equal(["-c", "echo hi"], start["args"]!.AsArray().Select(x => (string)x!).ToArray());
        Assert.Equal("/tmp", (string)start["cwd"]!);
        Assert.Equal("root", (string)start["user"]!);
        Assert.Equal("first", (string)start["tag"]!);
        Assert.Equal(["API_TOKEN", "MODE"], start["envNames"]!.AsArray().Select(x => (string)x!).ToArray());
        Assert.True((int)start["pid"]! > 0);
        Assert.Equal((int)start["pid"]!, (int)events[1]!["pid"]!);
        Assert.DoesNotContain("hunter2", events.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal(a, (string)events[8]!["path"]!);
        Assert.Equal(200, (int)events[8]!["httpStatus"]!);
        Assert.Equal(a, (string)events[9]!["path"]!);
        Assert.Equal(b, (string)events[9]!["destination"]!);
        Assert.Equal(b, (string)events[10]!["path"]!);

        // Paging: two at a time from a cursor.
        var (_, page, _) = await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/audit?limit=2");
        Assert.Equal(2, page!["events"]!.AsArray().Count);
        var next = (long)page["next"]!;
        Assert.Equal(seqs[1], next);
        var rest = await EventsAsync(_daemon.Api, id, $"?after={next}&limit=1000");
        Assert.Equal(seqs.Skip(2), rest.Select(e => (long)e!["seq"]!));
        // A time range that ends before the sandbox existed is empty.
        Assert.Empty(await EventsAsync(_daemon.Api, id, "?to=1000"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/audit?limit=0"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/audit?from=soon"));

        // Another team: exactly the answer for an id that never existed.
        var (_, _, other) = await TenantApi.TeamWithClientAsync(_daemon);
        using (other)
        {
            var refused = AssertError(HttpStatusCode.NotFound, await SendAsync(other, HttpMethod.Get, $"/sandboxes/{id}/audit"));
            var unknown = AssertError(HttpStatusCode.NotFound, await SendAsync(other, HttpMethod.Get, "/sandboxes/aaaaaaaaaaaaaaaaaaaa/audit"));
            Assert.Equal(unknown.Replace("aaaaaaaaaaaaaaaaaaaa", id, StringComparison.Ordinal), refused);
        }
    }

    [Fact]
    public async Task A_flood_of_commands_keeps_the_first_and_the_newest_events_and_counts_the_rest()
    {
        // The daemon's bound here is 100 events: 60 commands make 120.
        var created = await CreateAsync(_daemon, """{"templateID":"base","timeout":120}""");
        var id = Get<string>(created, "sandboxID");
        var token = Get<string>(created, "envdAccessToken");
        for (var i = 0; i < 60; i++)
        {
            Assert.Equal(i % 7, await EnvdCalls.RunAsync(_daemon, id, token, $"exit {i % 7}"));
        }
        var (_, page, _) = await SendAsync(_daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/audit");
        var events = page!["events"]!.AsArray();
        Assert.Equal(100, events.Count);
        Assert.Equal(20, (long)page["dropped"]!);
        // The first 50 events are commands 0-24; the newest 50 are commands 35-59; the gap is after the 50th.
        var args = events.Where(e => (string)e!["kind"]! == "process.start").Select(e => (string)e!["args"]![1]!).ToList();
        Assert.Equal(Enumerable.Range(0, 25).Concat(Enumerable.Range(35, 25)).Select(i => $"exit {i % 7}"), args);
        Assert.Equal((long)events[49]!["seq"]!, (long)page["droppedAfterSeq"]!);
        await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}");
    }
}
