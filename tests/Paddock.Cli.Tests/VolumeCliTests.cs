using System.Text.Json;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>`paddock volume` and `paddock sandbox create --volume` through the real binary against the real paddockd.</summary>
[Trait("needs", "daemon")]
public sealed class VolumeCliTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    private Task<CliResult> Run(params string[] args) => Cli.RunAsync(Cli.DaemonEnv(fixture.Daemon), args);

    [Fact]
    public async Task A_volume_is_made_mounted_refused_removal_while_mounted_and_removed()
    {
        var name = "cli-" + Guid.NewGuid().ToString("N")[..8];
        var created = await Run("volume", "create", name, "--size-mb", "16");
        Assert.True(created.ExitCode == 0, created.ToString());
        var id = created.Stdout.Trim();
        Assert.StartsWith("vol-", id, StringComparison.Ordinal);
        try
        {
            var listed = await Run("volume", "ls");
            Assert.Contains(listed.Stdout.Split('\n'), l => l.StartsWith(id + " ", StringComparison.Ordinal) && l.Contains(name, StringComparison.Ordinal) && l.Contains("16 MiB", StringComparison.Ordinal));
            using (var json = JsonDocument.Parse((await Run("volume", "ls", "--json")).Stdout))
            {
                Assert.Contains(json.RootElement.EnumerateArray(), v => v.GetProperty("volumeId").GetString() == id);
            }

            var bad = await Run("sandbox", "create", "--volume", "no-path");
            Assert.Equal(64, bad.ExitCode);
            Assert.Contains("expected NAME:/PATH", bad.Stderr, StringComparison.Ordinal);

            var sandbox = await Run("sandbox", "create", "--timeout", "300", "--volume", $"{name}:/work");
            Assert.True(sandbox.ExitCode == 0, sandbox.ToString());
            var sandboxId = sandbox.Stdout.Trim();
            try
            {
                var exec = await Run("exec", sandboxId, "--", "echo via-cli > /work/f && cat /work/f");
                Assert.True(exec.ExitCode == 0, exec.ToString());
                Assert.Equal("via-cli\n", exec.Stdout);
                var busy = await Run("volume", "rm", id);
                Assert.Equal(1, busy.ExitCode);
                Assert.Contains("mounted", busy.Stderr, StringComparison.Ordinal);
            }
            finally
            {
                await Run("sandbox", "kill", sandboxId);
            }
        }
        finally
        {
            var removed = await Run("volume", "rm", id);
            Assert.True(removed.ExitCode == 0, removed.ToString());
        }
        var gone = await Run("volume", "rm", id);
        Assert.Equal(66, gone.ExitCode);
    }
}
