using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Paddock.Envd.Process;
using Xunit.Abstractions;

namespace Paddock.Security.Tests;

/// <summary>
/// Faults (issue 5, item 4), bounded: SIGKILL of paddockd in the middle of creates and destroys, a restart over the
/// same state, and then nothing of a sandbox left on the host that the daemon does not know about: once every
/// sandbox the restarted daemon lists is killed, no mount, network namespace, sandbox directory, cgroup or process
/// of its tier remains.
/// </summary>
[Collection(BatteryCollection.Name)] // not in parallel with the battery: its counts and its load are its own
public sealed class FaultTests(ITestOutputHelper output)
{
    private const int Rounds = 3;

    [Fact]
    public async Task A_daemon_killed_mid_create_and_mid_destroy_recovers_without_leaks()
    {
        var random = new Random(20261128);
        await using var daemon = await PaddockdProcess.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };

        for (var round = 0; round < Rounds; round++)
        {
            // One sandbox to destroy while the daemon dies, and one create in flight.
            await using var doomed = await TestSandbox.CreateAsync(daemon, http);
            var create = SendAsync(http, daemon, HttpMethod.Post, "/sandboxes", """{"templateID":"base","timeout":600}""");
            var destroy = SendAsync(http, daemon, HttpMethod.Delete, "/sandboxes/" + doomed.Id, null);
            await Task.Delay(random.Next(20, 400));
            await daemon.KillAndRestartAsync();
            output.WriteLine($"round {round}: create {await Outcome(create)}, destroy {await Outcome(destroy)}");
        }

        // What the restarted daemon knows about, it can kill; what it does not know about must not exist.
        var (status, body) = await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null);
        Assert.Equal(HttpStatusCode.OK, status);
        foreach (var s in JsonNode.Parse(body)!.AsArray())
        {
            var (killed, text) = await SendAsync(http, daemon, HttpMethod.Delete, "/sandboxes/" + (string)s!["sandboxID"]!, null);
            Assert.True(killed is HttpStatusCode.NoContent or HttpStatusCode.NotFound, $"kill answered {(int)killed}: {text}");
        }
        var left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
        Assert.True(left == HostLeftovers.None, $"left on the host after recovery: {left}; daemon log: {daemon.Log}");
    }

    [Fact]
    public async Task A_sandbox_whose_agent_is_killed_can_be_killed_and_leaves_nothing()
    {
        await using var daemon = await PaddockdProcess.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        await using var victim = await TestSandbox.CreateAsync(daemon, http);
        await using var bystander = await TestSandbox.CreateAsync(daemon, http);
        Assert.Equal("up\n", (await victim.RunAsync("echo up")).Stdout);

        var agent = AgentPid(daemon, victim.Id);
        Process.GetProcessById(agent).Kill(); // SIGKILL, from the host, as an OOM kill or a crash would end it
        output.WriteLine($"killed agent pid {agent} of {victim.Id}");

        // A command to it now fails with an answer (no hang: RunAsync's own timeout bounds it).
        var afterwards = await Record.ExceptionAsync(() => victim.RunAsync("echo still", timeout: TimeSpan.FromSeconds(60)));
        Assert.True(afterwards is IOException or HttpRequestException, "a command to a sandbox without its agent: " + (afterwards?.ToString() ?? "it ran"));
        output.WriteLine("a command afterwards: " + afterwards!.Message);
        // The daemon notices the dead agent by itself and ends the sandbox: GET answers 404 as for any killed one. The
        // watcher does it at once; the bound is past the periodic lost-sandbox sweep (30 s), which would also do it.
        var (infoStatus, info) = await SendAsync(http, daemon, HttpMethod.Get, "/sandboxes/" + victim.Id, null);
        for (var i = 0; i < 120 && infoStatus != HttpStatusCode.NotFound; i++)
        {
            await Task.Delay(500);
            (infoStatus, info) = await SendAsync(http, daemon, HttpMethod.Get, "/sandboxes/" + victim.Id, null);
        }
        output.WriteLine($"GET /sandboxes/{victim.Id} after the kill: {(int)infoStatus} {info}");
        Assert.True(infoStatus == HttpStatusCode.NotFound, $"GET /sandboxes/{victim.Id} after its agent died: {(int)infoStatus} {info}");
        // Ended by the exit watcher (its log line), not by the periodic sweep.
        Assert.Contains("its agent exited on its own", daemon.Log, StringComparison.Ordinal);

        var (killed, text) = await SendAsync(http, daemon, HttpMethod.Delete, "/sandboxes/" + victim.Id, null);
        Assert.True(killed is HttpStatusCode.NoContent or HttpStatusCode.NotFound, $"kill answered {(int)killed}: {text}");
        Assert.True(daemon.IsAlive, "paddockd died: " + daemon.Log);
        Assert.Equal("fine\n", (await bystander.RunAsync("echo fine")).Stdout);
        var (listed, list) = await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null);
        Assert.Equal(HttpStatusCode.OK, listed);
        Assert.DoesNotContain(victim.Id, list, StringComparison.Ordinal);

        await bystander.DisposeAsync();
        var left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
        Assert.True(left == HostLeftovers.None, $"left on the host: {left}; daemon log: {daemon.Log}");
    }

    [Fact]
    public async Task A_command_streaming_when_its_agent_is_killed_ends_with_an_error_not_a_hang()
    {
        await using var daemon = await PaddockdProcess.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
        await using var victim = await TestSandbox.CreateAsync(daemon, http);
        // The test's own bound: far past what the end should take, so that reaching it can only mean a hang.
        using var bound = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        using var response = await victim.StartAsync("echo started; sleep 600", "user", bound.Token);
        await using var body = await response.Content.ReadAsStreamAsync(bound.Token);
        await using var events = TestSandbox.EventsAsync(body, bound.Token).GetAsyncEnumerator(bound.Token);
        var seen = new StringBuilder();
        while (!seen.ToString().Contains("started", StringComparison.Ordinal))
        {
            Assert.True(await events.MoveNextAsync(), "the stream ended before the command printed: " + seen);
            if (events.Current.EventCase == ProcessEvent.EventOneofCase.Data)
            {
                seen.Append(events.Current.Data.Stdout.ToStringUtf8());
            }
        }

        var agent = AgentPid(daemon, victim.Id);
        Process.GetProcessById(agent).Kill();
        output.WriteLine($"killed agent pid {agent} of {victim.Id} while its command streamed");

        // The stream must end now: by an error, or by its end without the process's end event. On gVisor nothing in the
        // host kernel answers for the sandbox's side of the connection once its Sentry is gone, so only the daemon's
        // noticing the death can end it; before that was done the read hung until this test's bound.
        Exception? error = null;
        try
        {
            while (await events.MoveNextAsync())
            {
                Assert.False(events.Current.EventCase == ProcessEvent.EventOneofCase.End,
                    $"the command reported an end ({events.Current.End}) although its agent was killed");
            }
        }
        catch (OperationCanceledException) when (bound.IsCancellationRequested)
        {
            Assert.Fail($"the command's stream was still open 90 s after its sandbox's agent was killed; daemon log: {daemon.Log}");
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            error = ex;
        }
        output.WriteLine("the stream ended " + (error is null ? "without an end event" : "with " + error.GetType().Name + ": " + error.Message));
        Assert.True(daemon.IsAlive, "paddockd died: " + daemon.Log);
    }

    [Fact]
    public async Task Without_runc_the_daemon_refuses_to_start_naming_it()
    {
        var missing = "/nonexistent-" + Guid.NewGuid().ToString("N")[..8] + "/runc";
        var failure = await Assert.ThrowsAsync<InvalidOperationException>(() => PaddockdProcess.StartAsync(
            environment: new Dictionary<string, string>(StringComparer.Ordinal) { ["PADDOCK_Runc__RuncBinary"] = missing }));
        output.WriteLine(failure.Message[..Math.Min(failure.Message.Length, 2000)]);
        // Its recovery at start lists runc's containers; a missing runc stops it there, with the path in the message.
        Assert.Contains("cannot run " + missing, failure.Message, StringComparison.Ordinal);
        Assert.Contains("paddockd: cannot start:", failure.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("Unhandled exception", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task With_runc_removed_under_a_running_daemon_a_create_fails_clearly_and_leaves_no_record()
    {
        // On a daemon whose default tier is gVisor the same with its runtime binary: runsc.
        var gvisor = Environment.GetEnvironmentVariable("PADDOCK_ISOLATION") == "gvisor";
        var (name, source, setting) = gvisor
            ? ("runsc", Environment.GetEnvironmentVariable("PADDOCK_Gvisor__RunscBinary") is { Length: > 0 } r ? r : "/usr/local/lib/paddock/runsc", "PADDOCK_Gvisor__RunscBinary")
            : ("runc", "/usr/sbin/runc", "PADDOCK_Runc__RuncBinary");
        var runcDir = Directory.CreateTempSubdirectory("paddock-runc-").FullName;
        try
        {
            var runc = Path.Combine(runcDir, name);
            File.Copy(source, runc);
            File.SetUnixFileMode(runc, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            await using var daemon = await PaddockdProcess.StartAsync(environment: new Dictionary<string, string>(StringComparer.Ordinal) { [setting] = runc });
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
            File.Delete(runc);

            var (status, body) = await SendAsync(http, daemon, HttpMethod.Post, "/sandboxes", """{"templateID":"base","timeout":60}""");
            output.WriteLine($"create without {name}: {(int)status} {body}");
            Assert.True(status == HttpStatusCode.ServiceUnavailable, $"create without {name} answered {(int)status}: {body}");
            Assert.True(daemon.IsAlive, "paddockd died: " + daemon.Log);
            Assert.Empty(ListedIds(await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null)));
            var left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
            Assert.True(left == HostLeftovers.None, $"left on the host: {left}; daemon log: {daemon.Log}");
            Assert.Contains(name, body, StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            Directory.Delete(runcDir, recursive: true);
        }
    }

    [Fact]
    public async Task A_full_state_disk_fails_a_create_clearly_loses_no_record_and_recovers_when_freed()
    {
        var mountPoint = Directory.CreateTempSubdirectory("paddock-fulldisk-").FullName;
        try
        {
            await RunAsync("mount", "-t", "tmpfs", "-o", "size=256m", "paddock-fulldisk", mountPoint);
            var stateDir = Path.Combine(mountPoint, "state");
            Directory.CreateDirectory(stateDir);
            // No disks made ahead: a create that took one would need no new block and rightly succeed on a full
            // disk (it did, when the stock's background refill after the first create beat the filler below).
            await using var daemon = await PaddockdProcess.StartAsync(stateDir, new Dictionary<string, string>
            {
                ["PADDOCK_Runc__DiskStockDepth"] = "0",
                ["PADDOCK_Gvisor__DiskStockDepth"] = "0",
            });
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };
            await using var existing = await TestSandbox.CreateAsync(daemon, http);

            // Fill what is left (dd stops at ENOSPC; the tmpfs bounds it).
            var filler = Path.Combine(mountPoint, "filler");
            await RunAsync("dd", "if=/dev/zero", "of=" + filler, "bs=1M", "count=512", "status=none");
            output.WriteLine("free after filling: " + new DriveInfo(mountPoint).AvailableFreeSpace + " bytes");

            var (status, body) = await SendAsync(http, daemon, HttpMethod.Post, "/sandboxes", """{"templateID":"base","timeout":60}""");
            output.WriteLine($"create on a full disk: {(int)status} {body}");
            Assert.True(status == HttpStatusCode.InsufficientStorage, $"create on a full state disk answered {(int)status}: {body}; daemon log: {daemon.Log}");
            Assert.Contains("disk is full", body, StringComparison.Ordinal);
            Assert.True(daemon.IsAlive, "paddockd died: " + daemon.Log);
            Assert.Equal([existing.Id], ListedIds(await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null)));

            File.Delete(filler);
            await using var after = await TestSandbox.CreateAsync(daemon, http);
            Assert.Equal("ok\n", (await after.RunAsync("echo ok")).Stdout);
            Assert.Equal("ok\n", (await existing.RunAsync("echo ok")).Stdout);
            Assert.Equal(new[] { after.Id, existing.Id }.Order(StringComparer.Ordinal), ListedIds(await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null)).Order(StringComparer.Ordinal));

            // And over a restart: the records of both survived the full disk.
            await daemon.KillAndRestartAsync();
            Assert.Equal(new[] { after.Id, existing.Id }.Order(StringComparer.Ordinal), ListedIds(await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null)).Order(StringComparer.Ordinal));
            await after.DisposeAsync();
            await existing.DisposeAsync();
            var left = await HostLeftovers.SettledAsync(daemon.StateDir, daemon.CgroupParent, TimeSpan.FromSeconds(30));
            Assert.True(left == HostLeftovers.None, $"left on the host: {left}; daemon log: {daemon.Log}");
        }
        finally
        {
            // The daemon's own dispose has run (await using) before this: its state dir is gone or held by mounts.
            await RunAsync("umount", "-l", mountPoint);
            Directory.Delete(mountPoint, recursive: true);
        }
    }

    private static string[] ListedIds((HttpStatusCode Status, string Body) listed)
    {
        Assert.Equal(HttpStatusCode.OK, listed.Status);
        return JsonNode.Parse(listed.Body)!.AsArray().Select(s => (string)s!["sandboxID"]!).ToArray();
    }

    /// <summary>
    /// The host pid of the sandbox's paddock-agent, found among the processes of its cgroup; on gVisor, where the agent
    /// is a Sentry task and no host process, the Sentry's (runsc's pid file), whose death is the agent's.
    /// </summary>
    private static int AgentPid(PaddockdProcess daemon, string sandboxId)
    {
        var sentryPidFile = Path.Combine(daemon.StateDir, "gvisor", "shared", "sandboxes", sandboxId, "init.pid");
        if (File.Exists(sentryPidFile))
        {
            return int.Parse(File.ReadAllText(sentryPidFile).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        }
        var cgroup = HostLeftovers.SandboxCgroup(daemon.CgroupParent, sandboxId, "pids")
            ?? HostLeftovers.SandboxCgroup(daemon.CgroupParent, sandboxId, "memory")
            ?? throw new InvalidOperationException($"no cgroup of {sandboxId} under {daemon.CgroupParent}");
        foreach (var pid in HostLeftovers.Pids(cgroup))
        {
            try
            {
                // The agent is the sandbox's pid 1, launched with "--port 49983" (OciConfig); its executable's name
                // depends on how the bundle launches it, its options do not.
                if (File.ReadAllText($"/proc/{pid}/cmdline").Contains("\0--port\049983", StringComparison.Ordinal))
                {
                    return pid;
                }
            }
            catch (IOException)
            {
                // gone meanwhile
            }
        }
        throw new InvalidOperationException($"no agent (--port 49983) among the processes of {cgroup}");
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(timeout.Token);
    }

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient http, PaddockdProcess daemon, HttpMethod method, string path, string? json)
    {
        using var request = new HttpRequestMessage(method, new Uri(daemon.Url, path));
        request.Headers.Add("X-API-Key", daemon.ApiKey);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        using var response = await http.SendAsync(request, cts.Token);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
    }

    private static async Task<string> Outcome(Task<(HttpStatusCode Status, string Body)> call)
    {
        try
        {
            return ((int)(await call).Status).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            return "cut off (" + ex.GetType().Name + ")";
        }
    }
}
