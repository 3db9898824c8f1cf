using System.Net;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>The cluster options: what --cluster needs, and the messages for what it does not accept.</summary>
public sealed class ClusterOptionsTests
{
    private const string Store = "postgres://paddock:secret@db:5432/paddock";

    private static DaemonOptions Parse(params string[] args) => DaemonOptions.Parse(args, _ => null);

    [Fact]
    public void Cluster_mode_takes_its_settings_from_the_options_and_defaults_the_rest()
    {
        var options = Parse("--cluster", "--store", Store, "--node-id", "node-1", "--listen", "http://10.0.0.5:3000", "--cluster-probe-timeout", "0.5");
        var cluster = Assert.IsType<Daemon.Cluster.ClusterSettings>(options.Cluster);
        Assert.Equal("node-1", cluster.NodeId);
        Assert.Equal(IPAddress.Parse("10.0.0.5"), cluster.AdvertiseAddress); // the listen address, not a wildcard
        Assert.Equal(11111, cluster.SiloPort);
        Assert.Equal("paddock", cluster.ClusterId);
        Assert.Equal(TimeSpan.FromMilliseconds(500), cluster.ProbeTimeout);
        Assert.Null(Parse("--store", Store).Cluster);
    }

    [Fact]
    public void The_environment_turns_cluster_mode_on_as_the_command_line_does()
    {
        var env = new Dictionary<string, string>
        {
            ["PADDOCK_CLUSTER"] = "true", ["PADDOCK_STORE"] = Store, ["PADDOCK_NODE_ID"] = "k8s-node-3",
            ["PADDOCK_ADVERTISE"] = "192.168.1.7", ["PADDOCK_LISTEN"] = "http://0.0.0.0:3000", ["PADDOCK_CLUSTER_PORT"] = "12000",
        };
        var cluster = DaemonOptions.Parse([], name => env.GetValueOrDefault(name)).Cluster!;
        Assert.Equal(("k8s-node-3", IPAddress.Parse("192.168.1.7"), 12000), (cluster.NodeId, cluster.AdvertiseAddress, cluster.SiloPort));
    }

    [Theory]
    [InlineData("--cluster needs the PostgreSQL store", "--cluster", "--node-id", "a", "--listen", "http://10.0.0.1:3000")]
    [InlineData("give --advertise IP", "--cluster", "--store", Store, "--node-id", "a", "--listen", "http://0.0.0.0:3000")]
    [InlineData("--cluster needs a fixed --listen port", "--cluster", "--store", Store, "--node-id", "a", "--listen", "http://10.0.0.1:0")]
    [InlineData("invalid node id 'Node_A'", "--cluster", "--store", Store, "--node-id", "Node_A")]
    [InlineData("invalid value '0.0.0.0' for --advertise", "--cluster", "--store", Store, "--advertise", "0.0.0.0")]
    [InlineData("invalid value '70000' for --cluster-port", "--cluster", "--store", Store, "--cluster-port", "70000")]
    [InlineData("only apply with --cluster", "--store", Store, "--node-id", "a")]
    public void A_wrong_combination_is_refused_with_a_message_that_says_what_to_give(string message, params string[] args)
    {
        var error = Assert.Throws<ArgumentException>(() => Parse(args));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
