using Paddock.Daemon.Pools;

namespace Paddock.Daemon.Tests.Pools;

public sealed class PoolSettingsTests
{
    [Fact]
    public void Pools_are_off_unless_asked_for()
    {
        var options = DaemonOptions.Parse([], _ => null);
        Assert.False(options.Pools.Enabled);
        Assert.Empty(options.Pools.Sizes);
    }

    [Fact]
    public void Sizes_and_refill_come_from_the_command_line_or_the_environment()
    {
        var fromArgs = DaemonOptions.Parse(["--pool", "base=8,other=2", "--pool-refill", "3"], _ => null);
        Assert.Equal(8, fromArgs.Pools.Sizes["base"]);
        Assert.Equal(2, fromArgs.Pools.Sizes["other"]);
        Assert.Equal(3, fromArgs.Pools.RefillConcurrency);
        Assert.True(fromArgs.Pools.Enabled);

        var fromEnv = DaemonOptions.Parse([], name => name == "PADDOCK_POOL" ? "base=4" : null);
        Assert.Equal(4, fromEnv.Pools.Sizes["base"]);
        Assert.Equal(2, fromEnv.Pools.RefillConcurrency);
    }

    [Theory]
    [InlineData("base")]
    [InlineData("=3")]
    [InlineData("base=-1")]
    [InlineData("base=lots")]
    [InlineData("base=100000")]
    public void Malformed_pools_are_refused_with_a_message(string value)
    {
        var error = Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--pool", value], _ => null));
        Assert.Contains("TEMPLATE=SIZE", error.Message, StringComparison.Ordinal);
    }
}
