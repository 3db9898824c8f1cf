using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Tests.Teams;

public sealed class TeamUsageTests
{
    [Fact]
    public void Reserve_admits_up_to_each_limit_exactly_and_release_gives_the_share_back()
    {
        var usage = new TeamUsage();
        var limits = new TeamLimits(MaxSandboxes: 3, MaxCpus: 4, MaxMemoryMB: 1024);
        usage.Reserve("a", limits, 2, 512);
        usage.Reserve("a", limits, 2, 512);
        Assert.Equal(new TeamTotals(2, 4, 1024), usage.Of("a"));
        Assert.Equal("maxCpus", Assert.Throws<TeamLimitException>(() => usage.Reserve("a", limits, 1, 128)).Limit);
        usage.Release("a", 2, 512);
        Assert.Equal("maxMemoryMB", Assert.Throws<TeamLimitException>(() => usage.Reserve("a", limits, 1, 513)).Limit);
        usage.Reserve("a", limits, 1, 512);
        Assert.Equal("maxSandboxes", Assert.Throws<TeamLimitException>(() => usage.Reserve("a", new TeamLimits(2, null, null), 1, 1)).Limit);
        // A refused reservation leaves the totals as they were; other teams are counted apart.
        Assert.Equal(new TeamTotals(2, 3, 1024), usage.Of("a"));
        usage.Reserve("b", TeamLimits.None, 64, 65536);
        Assert.Equal(new TeamTotals(1, 64, 65536), usage.Of("b"));
        usage.Release("a", 2, 512);
        usage.Release("a", 1, 512);
        Assert.Equal(default, usage.Of("a"));
    }

    [Fact]
    public void A_limit_of_zero_admits_nothing_and_adopted_sandboxes_count_without_a_check()
    {
        var usage = new TeamUsage();
        Assert.Equal("maxSandboxes", Assert.Throws<TeamLimitException>(() => usage.Reserve("z", new TeamLimits(0, null, null), 1, 128)).Limit);
        usage.Add("z", 8, 4096);
        Assert.Equal(new TeamTotals(1, 8, 4096), usage.Of("z"));
        Assert.Throws<TeamLimitException>(() => usage.Reserve("z", new TeamLimits(null, 8, null), 1, 128));
    }
}
