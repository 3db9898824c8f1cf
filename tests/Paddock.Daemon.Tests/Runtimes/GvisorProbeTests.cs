using Paddock.Daemon.Runtimes.Gvisor;

namespace Paddock.Daemon.Tests.Runtimes;

public sealed class GvisorProbeTests
{
    [Theory]
    [InlineData("runsc version 0.0~20240729.0\nspec: 1.2.0\n", true)]
    [InlineData("runsc version release-20250101.0\nspec: 1.1.0-rc.1\n", true)]
    [InlineData("runsc version 0.0~20221219.0\nspec: 1.0.2-dev\n", false)]
    [InlineData("something else\n", false)]
    [InlineData("", false)]
    public void Only_a_2024_or_newer_build_is_accepted(string output, bool available)
    {
        var result = GvisorProbe.Check("/x/runsc", output);

        Assert.Equal(available, result.IsAvailable);
        if (available)
        {
            Assert.StartsWith("runsc version", result.Version, StringComparison.Ordinal);
            Assert.Null(result.Reason);
        }
        else
        {
            Assert.Contains("scripts/install-runsc", result.Reason, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void A_missing_binary_says_how_to_install_it()
    {
        var result = GvisorProbe.Probe(new GvisorOptions { RunscBinary = "/nonexistent/runsc" });

        Assert.False(result.IsAvailable);
        Assert.Contains("/nonexistent/runsc", result.Reason, StringComparison.Ordinal);
        Assert.Contains("scripts/install-runsc", result.Reason, StringComparison.Ordinal);
    }

    [GvisorFact]
    public void The_installed_runsc_is_accepted()
    {
        var result = GvisorProbe.Probe(new GvisorOptions());

        Assert.True(result.IsAvailable, result.Reason);
        Assert.Contains("20240729", result.Version, StringComparison.Ordinal);
    }
}
