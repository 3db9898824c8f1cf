namespace Paddock.Bench.Cluster;

/// <summary>
/// The cluster bench's network, made by the bench and nowhere else, as the cluster tests make theirs (ClusterNetwork
/// in tests/Paddock.Daemon.Tests) but on 10.217.0.0/16 with names <c>pdkb-*</c>/<c>pb*</c>, so that it never collides
/// with a cluster test running beside it (those take 10.216.0.0/16 and <c>pdkc-*</c>): a hub namespace holding a
/// bridge, one namespace per node on the bridge (node i at 10.217.0.{i+1}/16), and a veth from the bench's own
/// namespace (10.217.0.254/16) to reach the nodes' APIs. No default route: nothing a node or sandbox sends leaves
/// these namespaces. Disposing deletes the namespaces (every veth with them) and the bench's veth.
/// </summary>
internal sealed class BenchNetwork : IAsyncDisposable
{
    private readonly string _tag;
    private readonly TextWriter _log;
    private readonly List<string> _namespaces = [];
    private bool _hostLink;

    private BenchNetwork(string tag, TextWriter log)
    {
        _tag = tag;
        _log = log;
    }

    /// <summary>The nodes' namespaces, node i at index i.</summary>
    public IReadOnlyList<string> NodeNamespaces => _namespaces.Skip(1).ToList();

    public static string NodeAddress(int index) => $"10.217.0.{index + 1}";

    public static async Task<BenchNetwork> CreateAsync(int nodes, TextWriter log, CancellationToken cancellationToken)
    {
        // Short: interface names stay within 15 characters (pb + 4 + suffix).
        var network = new BenchNetwork(Guid.NewGuid().ToString("N")[..4], log);
        try
        {
            await network.BuildAsync(nodes, cancellationToken);
            return network;
        }
        catch
        {
            await network.DisposeAsync();
            throw;
        }
    }

    private async Task BuildAsync(int nodes, CancellationToken cancellationToken)
    {
        var hub = $"pdkb-{_tag}-hub";
        await Ip(cancellationToken, "netns", "add", hub);
        _namespaces.Add(hub);
        await Ip(cancellationToken, "-n", hub, "link", "set", "lo", "up");
        await Ip(cancellationToken, "-n", hub, "link", "add", "br0", "type", "bridge");
        await Ip(cancellationToken, "-n", hub, "link", "set", "br0", "up");

        var host = $"pb{_tag}h";
        await Ip(cancellationToken, "link", "add", host, "type", "veth", "peer", "name", host + "p");
        _hostLink = true;
        await Ip(cancellationToken, "link", "set", host + "p", "netns", hub);
        await Ip(cancellationToken, "-n", hub, "link", "set", host + "p", "master", "br0", "up");
        await Ip(cancellationToken, "addr", "add", "10.217.0.254/16", "dev", host);
        await Ip(cancellationToken, "link", "set", host, "up");

        for (var i = 0; i < nodes; i++)
        {
            var ns = $"pdkb-{_tag}-n{i}";
            await Ip(cancellationToken, "netns", "add", ns);
            _namespaces.Add(ns);
            var link = $"pb{_tag}n{i}";
            await Ip(cancellationToken, "-n", ns, "link", "set", "lo", "up");
            await Ip(cancellationToken, "link", "add", link, "type", "veth", "peer", "name", link + "p");
            await Ip(cancellationToken, "link", "set", link, "netns", ns);
            await Ip(cancellationToken, "link", "set", link + "p", "netns", hub);
            await Ip(cancellationToken, "-n", hub, "link", "set", link + "p", "master", "br0", "up");
            await Ip(cancellationToken, "-n", ns, "addr", "add", NodeAddress(i) + "/16", "dev", link);
            await Ip(cancellationToken, "-n", ns, "link", "set", link, "up");
        }
    }

    private static Task Ip(CancellationToken cancellationToken, params string[] args) => Tools.RunAsync("ip", args, cancellationToken);

    public async ValueTask DisposeAsync()
    {
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            await Tools.TryRunAsync(_log, "ip", "netns", "del", ns);
        }
        _namespaces.Clear();
        if (_hostLink && Directory.Exists($"/sys/class/net/pb{_tag}h"))
        {
            // Usually gone with the hub namespace (deleting one end of a veth deletes both); this is for a half-built one.
            await Tools.TryRunAsync(_log, "ip", "link", "del", $"pb{_tag}h");
        }
    }
}
