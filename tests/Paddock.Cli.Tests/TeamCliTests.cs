using System.Text.Json;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>`paddock keys` and `paddock teams` through the real binary against the real paddockd.</summary>
[Trait("needs", "daemon")]
public sealed class TeamCliTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    private DaemonProcess Daemon => fixture.Daemon;

    private Task<CliResult> Admin(params string[] args) => Cli.RunAsync(Cli.DaemonEnv(Daemon), args);

    private Task<CliResult> As(string key, params string[] args) => Cli.RunAsync(Cli.DaemonEnv(Daemon, key), args);

    private static string Unique(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 9)];

    [Fact]
    public async Task An_admin_makes_a_team_with_limits_and_a_key_that_sees_only_its_own_sandboxes()
    {
        var name = Unique("cli");
        var created = await Admin("teams", "create", name, "--max-sandboxes", "1", "--max-memory-mb", "2048");
        Assert.True(created.ExitCode == 0, created.ToString());
        var team = created.Stdout.Trim();
        Assert.True(Guid.TryParse(team, out _), created.ToString());

        var key = await Admin("keys", "create", "--name", "cli runner", "--team", team);
        Assert.True(key.ExitCode == 0, key.ToString());
        var teamKey = key.Stdout.Trim();
        Assert.Matches("^e2b_[0-9a-f]{40}$", teamKey);
        Assert.Contains("shown only now", key.Stderr, StringComparison.Ordinal);

        var sandbox = await As(teamKey, "sandbox", "create", "--timeout", "300");
        Assert.True(sandbox.ExitCode == 0, sandbox.ToString());
        var id = sandbox.Stdout.Trim();
        try
        {
            var refused = await As(teamKey, "sandbox", "create");
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains("maxSandboxes", refused.Stderr, StringComparison.Ordinal);

            Assert.Contains(id, (await As(teamKey, "sandbox", "ls")).Stdout, StringComparison.Ordinal);
            Assert.DoesNotContain(id, (await Admin("sandbox", "ls")).Stdout, StringComparison.Ordinal);
            var foreign = await Admin("sandbox", "kill", id);
            Assert.Equal(66, foreign.ExitCode);

            var teams = await Admin("teams", "ls");
            Assert.True(teams.ExitCode == 0, teams.ToString());
            var row = Assert.Single(teams.Stdout.Split('\n'), l => l.StartsWith(team + " ", StringComparison.Ordinal));
            Assert.Contains("1/1", row, StringComparison.Ordinal);
            Assert.Contains("512/2048", row, StringComparison.Ordinal);

            var raised = await Admin("teams", "set-limits", team, "--max-sandboxes", "2");
            Assert.True(raised.ExitCode == 0, raised.ToString());
            Assert.Contains("sandboxes 2", raised.Stdout, StringComparison.Ordinal);
            Assert.Contains("memory 2048 MiB", raised.Stdout, StringComparison.Ordinal);
            var json = await As(teamKey, "teams", "ls", "--json");
            using (var doc = JsonDocument.Parse(json.Stdout))
            {
                var only = Assert.Single(doc.RootElement.EnumerateArray());
                Assert.Equal(2, only.GetProperty("limits").GetProperty("maxSandboxes").GetInt32());
                Assert.False(only.GetProperty("isAdmin").GetBoolean());
            }
            var unlimited = await Admin("teams", "set-limits", team, "--max-memory-mb", "none");
            Assert.Contains("memory unlimited", unlimited.Stdout, StringComparison.Ordinal);

            // The isolation tier: shown per sandbox, bindable per team, and an unknown one refused by name.
            Assert.Contains("Isolation", (await As(teamKey, "sandbox", "info", id)).Stdout, StringComparison.Ordinal);
            var bound = await Admin("teams", "set-limits", team, "--isolation", "runc");
            Assert.True(bound.ExitCode == 0, bound.ToString());
            Assert.Contains("isolation runc", bound.Stdout, StringComparison.Ordinal);
            var unknownTier = await As(teamKey, "sandbox", "create", "--isolation", "kata");
            Assert.NotEqual(0, unknownTier.ExitCode);
            Assert.Contains("unknown isolation 'kata'", unknownTier.Stderr, StringComparison.Ordinal);
            Assert.Contains("isolation any", (await Admin("teams", "set-limits", team, "--isolation", "any")).Stdout, StringComparison.Ordinal);

            // The paused-sandbox limit: set, shown, and given back to the daemon's default with 'none'.
            var paused = await Admin("teams", "set-limits", team, "--max-paused", "3");
            Assert.True(paused.ExitCode == 0, paused.ToString());
            Assert.Contains("paused 3", paused.Stdout, StringComparison.Ordinal);
            Assert.Contains("sandboxes 2", paused.Stdout, StringComparison.Ordinal);
            Assert.Contains("0/3", Assert.Single((await Admin("teams", "ls")).Stdout.Split('\n'), l => l.StartsWith(team + " ", StringComparison.Ordinal)), StringComparison.Ordinal);
            Assert.Contains("paused as the daemon's default", (await Admin("teams", "set-limits", team, "--max-paused", "none")).Stdout, StringComparison.Ordinal);
            Assert.Equal(64, (await Admin("teams", "set-limits", team, "--max-paused", "1.5")).ExitCode);

            var notAdmin = await As(teamKey, "teams", "create", Unique("nope"));
            Assert.Equal(77, notAdmin.ExitCode);
            Assert.Contains("admin team", notAdmin.Stderr, StringComparison.Ordinal);
        }
        finally
        {
            var kill = await As(teamKey, "sandbox", "kill", id);
            Assert.True(kill.ExitCode == 0, kill.ToString());
        }
    }

    [Fact]
    public async Task Keys_are_listed_masked_and_a_revoked_key_exits_77()
    {
        var team = (await Admin("teams", "create", Unique("keys"))).Stdout.Trim();
        var first = (await Admin("keys", "create", "--name", "first", "--team", team)).Stdout.Trim();
        var second = await As(first, "keys", "create", "--name", "second", "--json");
        Assert.True(second.ExitCode == 0, second.ToString());
        string secondKey, secondId;
        using (var doc = JsonDocument.Parse(second.Stdout))
        {
            secondKey = doc.RootElement.GetProperty("key").GetString()!;
            secondId = doc.RootElement.GetProperty("id").GetString()!;
        }

        var table = await As(first, "keys", "ls");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.StartsWith("KEY ID", table.Stdout, StringComparison.Ordinal);
        Assert.Contains(table.Stdout.Split('\n'), l => l.StartsWith(secondId + " ", StringComparison.Ordinal) && l.Contains("second", StringComparison.Ordinal) && l.Contains("e2b_…" + secondKey[^4..], StringComparison.Ordinal));
        Assert.DoesNotContain(secondKey, table.Stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(first, table.Stdout, StringComparison.Ordinal);
        var adminView = await Admin("keys", "ls", "--team", team, "--json");
        Assert.Equal(2, JsonDocument.Parse(adminView.Stdout).RootElement.GetArrayLength());

        var revoked = await As(first, "keys", "revoke", secondId);
        Assert.True(revoked.ExitCode == 0, revoked.ToString());
        Assert.Equal($"revoked {secondId}\n", revoked.Stdout);
        var refused = await As(secondKey, "sandbox", "ls");
        Assert.Equal(77, refused.ExitCode);
        var again = await As(first, "keys", "revoke", secondId);
        Assert.Equal(66, again.ExitCode);
        Assert.Contains($"no such key: '{secondId}'", again.Stderr, StringComparison.Ordinal);

        Assert.Equal(64, (await As(first, "teams", "set-limits", team)).ExitCode);
        Assert.Equal(64, (await Admin("teams", "set-limits", team, "--max-cpus", "lots")).ExitCode);
    }
}
