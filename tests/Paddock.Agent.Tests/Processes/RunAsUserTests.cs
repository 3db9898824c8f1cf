using System.Diagnostics;
using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>A temporary account (useradd, in the group "users"), removed with its home afterwards.</summary>
public sealed class TemporaryUserFixture : IAsyncLifetime
{
    public string Name { get; } = "pdk" + Guid.NewGuid().ToString("n")[..12];

    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await RunAsync("useradd", "-m", "-s", "/bin/sh", "-G", "users", Name);
        Agent = await AgentProcess.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Agent.DisposeAsync();
        await RunAsync("userdel", "-r", "-f", Name);
    }

    internal static async Task<string> RunAsync(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        using var cts = Calls.Timeout();
        var output = await process.StandardOutput.ReadToEndAsync(cts.Token);
        var error = await process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        // userdel warns (exit 12) when the mail spool is missing; that is not a failure of the test.
        Assert.True(process.ExitCode is 0 or 12, $"{command} {string.Join(' ', args)} failed ({process.ExitCode}): {error}");
        return output;
    }
}

/// <summary>
/// Processes started as another user (the spawning thread alone switches identity around posix_spawn): identity,
/// groups, capabilities, home, terminal, errors, and the agent's own threads staying root.
/// </summary>
public sealed class RunAsUserTests : IClassFixture<TemporaryUserFixture>
{
    private readonly TemporaryUserFixture _user;

    public RunAsUserTests(TemporaryUserFixture user)
    {
        _user = user;
    }

    private ConnectClient Client() => new(_user.Agent.Http);

    private ConnectCallOptions AsUser => new() { User = _user.Name };

    [Fact]
    public async Task A_command_runs_with_the_user_s_ids_groups_home_and_no_root_privileges()
    {
        using var cts = Calls.Timeout();
        var uid = (await TemporaryUserFixture.RunAsync("id", "-u", _user.Name)).Trim();
        var script = "id -u; id -g; id -G; pwd; echo \"$HOME $USER $LOGNAME\"; touch /root/paddock-should-fail 2>/dev/null && echo WROTE || echo denied";
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell(script), cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);

        var lines = run.StdoutText.Split('\n');
        Assert.Equal(0, end.ExitCode);
        Assert.Equal(uid, lines[0]);
        Assert.Contains("100", lines[2].Split(' ')); // the supplementary group "users"
        Assert.Equal($"/home/{_user.Name}", lines[3]);
        Assert.Equal($"/home/{_user.Name} {_user.Name} {_user.Name}", lines[4]);
        Assert.Equal("denied", lines[5]);
        Assert.False(File.Exists("/root/paddock-should-fail"));
    }

    [Fact]
    public async Task The_kernel_sees_the_user_in_every_id_with_no_capabilities()
    {
        using var cts = Calls.Timeout();
        var uid = (await TemporaryUserFixture.RunAsync("id", "-u", _user.Name)).Trim();
        var gid = (await TemporaryUserFixture.RunAsync("id", "-g", _user.Name)).Trim();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("cat /proc/self/status"), cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal(0, end.ExitCode);
        var status = ProcStatus(run.StdoutText);
        // real, effective, saved, filesystem: none may stay 0, or the process could return to root.
        Assert.Equal($"{uid}\t{uid}\t{uid}\t{uid}", status["Uid"]);
        Assert.Equal($"{gid}\t{gid}\t{gid}\t{gid}", status["Gid"]);
        Assert.Equal(new[] { gid, "100" }.Order(), status["Groups"].Split(' ', StringSplitOptions.RemoveEmptyEntries).Order());
        Assert.Equal("0000000000000000", status["CapPrm"]);
        Assert.Equal("0000000000000000", status["CapEff"]);
        Assert.Equal("0000000000000000", status["CapAmb"]);
    }

    [Fact]
    public async Task A_process_of_the_user_cannot_become_root_again()
    {
        using var cts = Calls.Timeout();
        var script = "python3 -c 'import os\ntry:\n os.setuid(0)\n print(\"ROOT\")\nexcept PermissionError as e:\n print(\"EPERM\", e.errno)'; " +
                     "python3 -c 'import os\ntry:\n os.setresuid(-1, 0, -1)\n print(\"ROOT\")\nexcept PermissionError as e:\n print(\"EPERM\", e.errno)'";
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell(script), cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);

        Assert.Equal(0, end.ExitCode);
        Assert.Equal("EPERM 1\nEPERM 1\n", run.StdoutText);
    }

    [Fact]
    public async Task The_agent_s_other_threads_stay_root_while_processes_start_as_the_user()
    {
        using var cts = Calls.Timeout(120);
        var uid = (await TemporaryUserFixture.RunAsync("id", "-u", _user.Name)).Trim();
        const int Rounds = 40;
        var client = Client();
        async Task<string> RunAsync(ConnectCallOptions? options)
        {
            await using var run = await ProcessRun.StartAsync(client, Calls.Shell("id -u; id -G"), cts.Token, options);
            await run.WaitEndAsync(cts.Token);
            return run.StdoutText;
        }
        // Interleaved: root and user starts race each other on the agent's thread pool.
        var runs = Enumerable.Range(0, Rounds * 2).Select(i => RunAsync(i % 2 == 0 ? AsUser : new ConnectCallOptions { User = "root" })).ToList();
        var outputs = await Task.WhenAll(runs);

        for (var i = 0; i < outputs.Length; i++)
        {
            var lines = outputs[i].Split('\n');
            if (i % 2 == 0)
            {
                Assert.Equal(uid, lines[0]);
            }
            else
            {
                Assert.Equal("0", lines[0]);
                Assert.Contains("0", lines[1].Split(' '));
                Assert.DoesNotContain("100", lines[1].Split(' '));
            }
        }
        // And afterwards every thread of the agent is root again, with root's groups.
        var agentGroups = ProcStatus(File.ReadAllText($"/proc/{_user.Agent.Pid}/status"))["Groups"];
        foreach (var task in Directory.GetDirectories($"/proc/{_user.Agent.Pid}/task"))
        {
            string text;
            try
            {
                text = File.ReadAllText(Path.Combine(task, "status"));
            }
            catch (IOException)
            {
                continue; // the thread ended meanwhile
            }
            var status = ProcStatus(text);
            Assert.Equal("0\t0\t0\t0", status["Uid"]);
            Assert.Equal("0\t0\t0\t0", status["Gid"]);
            Assert.Equal(agentGroups, status["Groups"]);
        }
    }

    [Fact]
    public async Task A_directory_the_user_may_enter_works_and_an_executable_the_user_may_not_run_is_refused()
    {
        using var cts = Calls.Timeout();
        var dir = Directory.CreateTempSubdirectory("paddock-exec-");
        try
        {
            var tool = Path.Combine(dir.FullName, "root-only");
            await File.WriteAllTextAsync(tool, "#!/bin/sh\necho ran\n", cts.Token);
            File.SetUnixFileMode(tool, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            File.SetUnixFileMode(dir.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute |
                UnixFileMode.OtherExecute | UnixFileMode.OtherRead | UnixFileMode.GroupExecute | UnixFileMode.GroupRead);

            var request = new StartRequest { Process = new ProcessConfig { Cmd = tool, Cwd = dir.FullName } };
            var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token, AsUser));
            Assert.Equal(ConnectCode.InvalidArgument, error.Code);
            Assert.Equal($"cannot execute '{tool}': permission denied", error.Message);

            // The same program runs for root (the agent's own identity), from the same directory.
            await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token, new ConnectCallOptions { User = "root" });
            Assert.Equal(0, (await run.WaitEndAsync(cts.Token)).ExitCode);
            Assert.Equal("ran\n", run.StdoutText);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact(Skip = "known hole (2026-11-28): while the spawning thread is the user, that user's processes may signal it, and a signal to a thread id goes to the whole agent; this SIGTERM loop shut the agent down after 1 of 200 starts (unskipped run, 2026-11-28). Fix: honour shutdown signals only from outside the sandbox's pid namespace, or switch identity in a separate spawner process.")]
    public async Task A_process_of_the_user_cannot_signal_the_agent_while_it_starts_processes_as_the_user()
    {
        using var cts = Calls.Timeout(90);
        await using var agent = await AgentProcess.StartAsync();
        var client = new ConnectClient(agent.Http);
        // Bounded: 20 s of SIGTERM to every thread of the agent, as the user.
        var flood = $"end=$(($(date +%s)+20)); while [ $(date +%s) -lt $end ]; do for t in /proc/{agent.Pid}/task/*; do kill -TERM ${{t##*/}} 2>/dev/null; done; done";
        await using var attacker = await ProcessRun.StartAsync(client, Calls.Shell(flood), cts.Token, AsUser);
        var started = 0;
        Exception? failure = null;
        for (var i = 0; i < 200; i++)
        {
            try
            {
                await using var run = await ProcessRun.StartAsync(client, new StartRequest { Process = new ProcessConfig { Cmd = "/bin/true", Cwd = "/" } }, cts.Token, AsUser);
                await run.WaitEndAsync(cts.Token);
                started++;
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException or ConnectException)
            {
                failure = ex; // the agent is shutting down or gone
                break;
            }
        }
        Assert.True(started == 200, $"only {started} of 200 starts worked: {failure?.Message}");
        using var health = await agent.Http.GetAsync("/health", cts.Token);
        Assert.Equal(System.Net.HttpStatusCode.NoContent, health.StatusCode);
        Assert.False(agent.HasExited, "a process of the user shut the agent down");
    }

    private static Dictionary<string, string> ProcStatus(string text) => text
        .Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => l.Split(':', 2))
        .Where(p => p.Length == 2)
        .ToDictionary(p => p[0], p => p[1].Trim());

    [Fact]
    public async Task A_directory_the_user_may_not_enter_is_refused_with_a_clear_message()
    {
        using var cts = Calls.Timeout();
        var dir = Directory.CreateTempSubdirectory("paddock-private-");
        try
        {
            if (OperatingSystem.IsLinux())
            {
                File.SetUnixFileMode(dir.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            var request = Calls.Shell("pwd");
            request.Process.Cwd = dir.FullName;
            var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token, AsUser));
            Assert.Equal(ConnectCode.InvalidArgument, error.Code);
            Assert.Contains(dir.FullName, error.Message, StringComparison.Ordinal);
            Assert.Contains("Permission denied", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_missing_command_run_as_the_user_is_refused_with_its_name()
    {
        using var cts = Calls.Timeout();
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/nonexistent/paddock-tool" } };
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token, AsUser));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        Assert.Contains("/nonexistent/paddock-tool", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_terminal_for_the_user_is_theirs_and_controlling()
    {
        using var cts = Calls.Timeout();
        var request = PtyTests.OnTerminal("stty size < /dev/tty && stat -c %U $(tty)", 90, 20);
        await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal(0, end.ExitCode);
        Assert.Contains("20 90\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.Contains(_user.Name + "\r\n", run.PtyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_agent_signals_a_process_of_another_user()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 30"), cts.Token, AsUser);
        await Client().SignalAsync(run.Pid, Signal.Sigkill, cts.Token);
        Assert.Equal("signal: killed", (await run.WaitEndAsync(cts.Token)).Status);
    }

    [Fact]
    public async Task An_unknown_user_is_unauthenticated()
    {
        using var cts = Calls.Timeout();
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), Calls.Shell("true"), cts.Token, new ConnectCallOptions { User = "no-such-user-here" }));
        Assert.Equal(ConnectCode.Unauthenticated, error.Code);
    }
}
