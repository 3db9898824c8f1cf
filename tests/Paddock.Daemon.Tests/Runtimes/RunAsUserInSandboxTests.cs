using System.Globalization;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// A command run as `user` inside a real sandbox (the agent is root and PID 1 there, with Docker's default
/// capabilities): the agent switches only its spawning thread to the user around posix_spawn, so these check from
/// inside what the kernel gave the command, that it cannot get root back, and that the agent itself stays root.
/// </summary>
[Collection(RuncCollection.Name)]
public sealed class RunAsUserInSandboxTests
{
    // CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP
    private const string DockerDefault = "00000000a80425fb";
    private static readonly TimeSpan Call = TimeSpan.FromSeconds(30);

    private readonly RuncFixture _fixture;

    public RunAsUserInSandboxTests(RuncFixture fixture) => _fixture = fixture;

    [Fact]
    public async Task A_command_of_user_has_every_id_1000_the_user_s_groups_and_no_capabilities()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var groups = await sandbox.RunAsync("id -G user", user: "root");
        var status = await sandbox.RunAsync("cat /proc/self/status", user: "user");

        Assert.Equal(0, status.ExitCode);
        var fields = Fields(status.Stdout);
        Assert.Equal("1000\t1000\t1000\t1000", fields["Uid"]);
        Assert.Equal("1000\t1000\t1000\t1000", fields["Gid"]);
        Assert.Equal(Set(groups.Stdout), Set(fields["Groups"]));
        Assert.Contains("1000", Set(fields["Groups"]));
        Assert.Equal("0000000000000000", fields["CapPrm"]);
        Assert.Equal("0000000000000000", fields["CapEff"]);
        Assert.Equal("0000000000000000", fields["CapInh"]);
        Assert.Equal("0000000000000000", fields["CapAmb"]);
        Assert.Equal(DockerDefault, fields["CapBnd"]);
        // Off by default, so that sudo works (issue 18); the setuid calls below still fail without it.
        Assert.Equal("0", fields["NoNewPrivs"]);
    }

    [Fact]
    public async Task A_command_of_user_cannot_become_root_again()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var setuid = await sandbox.RunAsync("python3 -c 'import os\ntry:\n os.setuid(0)\n print(\"ROOT\")\nexcept PermissionError as e:\n print(\"EPERM\", e.errno)'", user: "user");
        var seteuid = await sandbox.RunAsync("python3 -c 'import os\ntry:\n os.setresuid(-1, 0, -1)\n print(\"ROOT\")\nexcept PermissionError as e:\n print(\"EPERM\", e.errno)'", user: "user");
        var setgid = await sandbox.RunAsync("python3 -c 'import os\ntry:\n os.setgroups([0])\n print(\"ROOT\")\nexcept PermissionError as e:\n print(\"EPERM\", e.errno)'", user: "user");

        Assert.Equal("EPERM 1\n", setuid.Stdout);
        Assert.Equal("EPERM 1\n", seteuid.Stdout);
        Assert.Equal("EPERM 1\n", setgid.Stdout);
    }

    [Fact]
    public async Task Root_commands_started_among_many_user_commands_run_as_root_and_the_agent_stays_root()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        const int Rounds = 30;
        var runs = Enumerable.Range(0, Rounds * 2)
            .Select(i => AgentCalls.RunAsync(_fixture.Runtime, sandbox.Id, "/usr/bin/id", ["-u"], i % 2 == 0 ? "user" : "root", TimeSpan.FromSeconds(60)))
            .ToList();
        var outputs = await Task.WhenAll(runs);
        var threads = await sandbox.RunAsync("for t in /proc/1/task/*; do grep -E '^(Uid|Gid|Groups):' $t/status | tr '\\t' ' ' | tr '\\n' ';'; echo; done", user: "root");

        for (var i = 0; i < outputs.Length; i++)
        {
            Assert.Equal(i % 2 == 0 ? "1000\n" : "0\n", outputs[i].Stdout);
        }
        var lines = threads.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length > 3, threads.ToString());
        Assert.All(lines, l => Assert.StartsWith("Uid: 0 0 0 0;Gid: 0 0 0 0;", l, StringComparison.Ordinal));
        Assert.Single(lines.Distinct());
    }

    [Fact]
    public async Task Shutdown_signals_from_the_user_s_processes_during_user_starts_do_not_stop_the_agent()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        // While the spawn thread is the user (one posix_spawn), kill(2) by that user's processes is permitted against
        // it; as PID 1 the agent must ignore the shutdown signals it would otherwise handle. The signaller ignores them
        // itself and sends them to every thread of PID 1 for a bounded time, counting the sends the kernel allowed.
        const string Signaller = """
            trap '' TERM INT QUIT HUP
            ok=0; end=$(( $(date +%s) + 15 ))
            while [ "$(date +%s)" -lt "$end" ]; do
              for t in $(ls /proc/1/task 2>/dev/null || seq 1 64); do
                for s in TERM INT QUIT HUP; do kill -s $s "$t" 2>/dev/null && ok=$((ok+1)); done
              done
            done
            echo "allowed=$ok"
            """;
        var signaller = sandbox.RunAsync(Signaller, user: "user", timeout: TimeSpan.FromSeconds(90));
        var starts = 0;
        for (var round = 0; round < 40 && !signaller.IsCompleted; round++)
        {
            var batch = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ =>
                AgentCalls.RunAsync(_fixture.Runtime, sandbox.Id, "/usr/bin/id", ["-u"], "user", TimeSpan.FromSeconds(60))));
            starts += batch.Count(o => o.ExitCode == 0);
        }
        var sent = await signaller;

        Console.WriteLine($"{starts} user starts while the signaller ran; {sent.Stdout.Trim()}");
        Assert.StartsWith("allowed=", sent.Stdout, StringComparison.Ordinal);
        Assert.True(starts > 0, "no user start succeeded while the signaller ran");
        var health = await AgentCalls.Client(_fixture.Runtime, sandbox.Id, TimeSpan.FromSeconds(30)).GetAsync("/health");
        Assert.True(health.IsSuccessStatusCode, "GET /health after the signals: " + health.StatusCode);
        Assert.Equal("ok\n", (await sandbox.RunAsync("echo ok", user: "user")).Stdout);
    }

    [Fact]
    public async Task A_cwd_user_may_not_enter_and_a_missing_executable_give_their_own_errors()
    {
        await using var sandbox = await _fixture.StartAsync(_fixture.Spec(_fixture.Base));

        var cwd = await Assert.ThrowsAsync<IOException>(() => AgentCalls.RunAsync(_fixture.Runtime, sandbox.Id, "/bin/pwd", [], "user", Call, cwd: "/root"));
        var missing = await Assert.ThrowsAsync<IOException>(() => AgentCalls.RunAsync(_fixture.Runtime, sandbox.Id, "/nonexistent/tool", [], "user", Call));
        var asRoot = await AgentCalls.RunAsync(_fixture.Runtime, sandbox.Id, "/bin/pwd", [], "root", Call, cwd: "/root");

        // The Connect error travels as JSON, which escapes the quotes.
        var cwdText = cwd.Message.Replace("\\u0027", "'", StringComparison.Ordinal);
        var missingText = missing.Message.Replace("\\u0027", "'", StringComparison.Ordinal);
        Assert.Contains("invalid_argument", cwdText, StringComparison.Ordinal);
        Assert.Contains("cannot use cwd '/root' as user 'user': Permission denied", cwdText, StringComparison.Ordinal);
        Assert.Contains("invalid_argument", missingText, StringComparison.Ordinal);
        Assert.Contains("cannot execute '/nonexistent/tool'", missingText, StringComparison.Ordinal);
        Assert.Equal("/root\n", asRoot.Stdout);
    }

    private static Dictionary<string, string> Fields(string status) => status
        .Split('\n', StringSplitOptions.RemoveEmptyEntries)
        .Select(l => l.Split(':', 2))
        .Where(p => p.Length == 2)
        .ToDictionary(p => p[0], p => p[1].Trim(), StringComparer.Ordinal);

    private static SortedSet<string> Set(string numbers) =>
        new(numbers.Split([' ', '\t', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(n => uint.Parse(n, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture)), StringComparer.Ordinal);
}
