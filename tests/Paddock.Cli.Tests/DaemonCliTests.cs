using System.Text.Json;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>The sandbox lifecycle through the real binary against the real paddockd.</summary>
[Trait("needs", "daemon")]
public sealed class DaemonCliTests : IClassFixture<DaemonFixture>, IDisposable
{
    private readonly DaemonProcess _daemon;
    private readonly string _dir = Directory.CreateTempSubdirectory("paddock-cli-daemon-").FullName;

    public DaemonCliTests(DaemonFixture fixture) => _daemon = fixture.Daemon;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Task<CliResult> Paddock(params string[] args) => Cli.RunAsync(Cli.DaemonEnv(_daemon), args);

    [Fact]
    public async Task Create_exec_cp_ls_info_timeout_kill()
    {
        var created = await Paddock("sandbox", "create", "base", "--timeout", "600", "--metadata", "suite=cli");
        Assert.True(created.ExitCode == 0, created.ToString());
        var id = created.Stdout.Trim();
        Assert.Matches("^[A-Za-z0-9_-]+$", id);
        try
        {
            var exec = await Paddock("exec", id, "--", "echo in-sandbox; exit 4");
            Assert.Equal(4, exec.ExitCode);
            Assert.Equal("in-sandbox\n", exec.Stdout);

            var local = Path.Combine(_dir, "in.txt");
            await File.WriteAllTextAsync(local, "payload\n");
            Assert.Equal(0, (await Paddock("cp", local, $"{id}:/tmp/in.txt")).ExitCode);
            Assert.Equal("payload\n", (await Paddock("exec", id, "--", "cat /tmp/in.txt")).Stdout);
            var back = Path.Combine(_dir, "out.txt");
            Assert.Equal(0, (await Paddock("cp", $"{id}:/tmp/in.txt", back)).ExitCode);
            Assert.Equal("payload\n", await File.ReadAllTextAsync(back));

            var table = await Paddock("sandbox", "ls");
            Assert.Equal(0, table.ExitCode);
            Assert.StartsWith("SANDBOX ID", table.Stdout, StringComparison.Ordinal);
            Assert.Contains(table.Stdout.Split('\n'), line => line.StartsWith(id + " ", StringComparison.Ordinal) && line.Contains("running", StringComparison.Ordinal));

            var json = await Paddock("sandbox", "ls", "--json");
            Assert.Equal(0, json.ExitCode);
            using (var doc = JsonDocument.Parse(json.Stdout))
            {
                var mine = Assert.Single(doc.RootElement.EnumerateArray(), e => e.GetProperty("sandboxId").GetString() == id);
                Assert.Equal("Running", mine.GetProperty("state").GetString());
                Assert.Equal("cli", mine.GetProperty("metadata").GetProperty("suite").GetString());
            }

            var info = await Paddock("sandbox", "info", id, "--json");
            Assert.Equal(0, info.ExitCode);
            using (var doc = JsonDocument.Parse(info.Stdout))
            {
                Assert.Equal(id, doc.RootElement.GetProperty("sandboxId").GetString());
            }
            Assert.Contains($"Sandbox:", (await Paddock("sandbox", "info", id)).Stdout, StringComparison.Ordinal);

            var timeout = await Paddock("sandbox", "timeout", id, "900");
            Assert.True(timeout.ExitCode == 0, timeout.ToString());
            Assert.Contains("ends at", timeout.Stdout, StringComparison.Ordinal);

            Assert.Equal(0, (await Paddock("logs", id)).ExitCode);
        }
        finally
        {
            var kill = await Paddock("sandbox", "kill", id);
            Assert.True(kill.ExitCode == 0, kill.ToString());
            Assert.Equal($"killed {id}\n", kill.Stdout);
        }
        var again = await Paddock("sandbox", "kill", id);
        Assert.Equal(66, again.ExitCode);
        var gone = await Paddock("exec", id, "--", "true");
        Assert.Equal(66, gone.ExitCode);
        Assert.Contains($"no such sandbox: '{id}'", gone.Stderr, StringComparison.Ordinal);

        // The audit trail outlives the sandbox: the commands and the upload above, with exit codes.
        var audit = await Paddock("audit", id);
        Assert.True(audit.ExitCode == 0, audit.ToString());
        var lines = audit.Stdout.Split('\n');
        Assert.Contains(lines, l => l.Contains("process.start", StringComparison.Ordinal) && l.Contains("cat /tmp/in.txt", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("process.end", StringComparison.Ordinal) && l.Contains("exit 0", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Contains("file.write", StringComparison.Ordinal) && l.Contains("/tmp/in.txt", StringComparison.Ordinal));
        // --follow of an ended sandbox prints the trail and returns; --json is one object per line.
        var followed = await Paddock("audit", id, "--follow", "--json");
        Assert.True(followed.ExitCode == 0, followed.ToString());
        var kinds = followed.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("kind").GetString()).ToList();
        Assert.Equal(lines.Count(l => l.Length > 0), kinds.Count);
        Assert.Contains("process.end", kinds);
    }

    [RunscFact]
    public async Task Fork_prints_one_new_id_per_copy_each_running_and_refuses_a_bad_count_and_a_tier_that_cannot()
    {
        var created = await Paddock("sandbox", "create", "base", "--isolation", "gvisor", "--timeout", "600");
        Assert.True(created.ExitCode == 0, created.ToString());
        var id = created.Stdout.Trim();
        var copies = new List<string>();
        try
        {
            // Forked before any command through the proxy: a source with connections open at the capture hits the
            // known gVisor restore issue (ARCHITECTURE.md); the files and processes a copy inherits are checked by
            // GvisorForkTests at the runtime level.
            var fork = await Paddock("sandbox", "fork", id, "--count", "2", "--timeout", "300");
            Assert.True(fork.ExitCode == 0, fork.ToString());
            copies.AddRange(fork.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Equal(2, copies.Distinct().Count());
            Assert.DoesNotContain(id, copies);
            foreach (var copy in copies)
            {
                Assert.Equal("in-copy\n", (await Paddock("exec", copy, "--", "echo in-copy")).Stdout);
            }
            Assert.Equal(64, (await Paddock("sandbox", "fork", id, "--count", "0")).ExitCode);

            var runc = (await Paddock("sandbox", "create", "base", "--isolation", "runc")).Stdout.Trim();
            try
            {
                var refused = await Paddock("sandbox", "fork", runc);
                Assert.NotEqual(0, refused.ExitCode);
                Assert.Contains("the runc isolation tier cannot fork", refused.Stderr, StringComparison.Ordinal);
            }
            finally
            {
                await Paddock("sandbox", "kill", runc);
            }
        }
        finally
        {
            foreach (var copy in copies)
            {
                await Paddock("sandbox", "kill", copy);
            }
            await Paddock("sandbox", "kill", id);
        }
    }

    [Fact]
    public async Task Unknown_ids_exit_66_with_a_clear_message()
    {
        var result = await Paddock("sandbox", "info", "nosuchsandbox0000000");
        Assert.Equal(66, result.ExitCode);
        Assert.Contains("no such sandbox: 'nosuchsandbox0000000'", result.Stderr, StringComparison.Ordinal);
        var exec = await Paddock("exec", "nosuchsandbox0000000", "--", "true");
        Assert.Equal(66, exec.ExitCode);
    }

    [Fact]
    public async Task A_bad_key_exits_77_and_names_where_the_key_came_from()
    {
        var result = await Cli.RunAsync(Cli.DaemonEnv(_daemon, key: "paddock_wrong"), "sandbox", "ls");
        Assert.Equal(77, result.ExitCode);
        Assert.Contains("PADDOCK_API_KEY", result.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_key_file_in_the_state_directory_is_used_when_no_key_is_set()
    {
        var result = await Cli.RunAsync(new Dictionary<string, string?> { ["PADDOCK_URL"] = _daemon.Url.ToString(), ["PADDOCK_STATE_DIR"] = _daemon.StateDir }, "sandbox", "ls", "--json");
        Assert.True(result.ExitCode == 0, result.ToString());
    }

    [Fact]
    public async Task Template_ls_shows_base()
    {
        var table = await Paddock("template", "ls");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains("base", table.Stdout, StringComparison.Ordinal);
        var json = await Paddock("template", "ls", "--json");
        Assert.Equal(JsonValueKind.Array, JsonDocument.Parse(json.Stdout).RootElement.ValueKind);
    }

    [Fact]
    public async Task Shell_into_a_daemon_sandbox()
    {
        var id = (await Paddock("sandbox", "create")).Stdout.Trim();
        try
        {
            var env = string.Join(' ', Cli.DaemonEnv(_daemon).Select(kv => $"{kv.Key}={kv.Value}"));
            await using var tmux = await TmuxSession.StartAsync($"env {env} {Cli.Binary} shell {id}; sleep 60", 100, 30);
            await tmux.WaitForAsync(s => s.TrimEnd().EndsWith('#') || s.TrimEnd().EndsWith('$'), "a shell prompt");
            await tmux.SendKeysAsync("echo $((7*6))y", "Enter");
            await tmux.WaitForAsync(s => s.Contains("\n42y", StringComparison.Ordinal), "the command's output");
            await tmux.SendKeysAsync("exit", "Enter");
        }
        finally
        {
            await Paddock("sandbox", "kill", id);
        }
    }
}

/// <summary>A fact that runs only where runsc is installed (scripts/setup installs it), and otherwise says why not.</summary>
public sealed class RunscFactAttribute : FactAttribute
{
    public RunscFactAttribute()
    {
        if (!File.Exists("/usr/local/lib/paddock/runsc"))
        {
            Skip = "runsc is not installed at /usr/local/lib/paddock/runsc (scripts/setup runs scripts/install-runsc)";
        }
    }
}
