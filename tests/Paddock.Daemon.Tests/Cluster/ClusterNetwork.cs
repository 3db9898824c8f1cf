using System.Diagnostics;
using System.Globalization;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// The network of a cluster test, made by the test and nowhere else: a hub namespace holding a bridge, one namespace
/// per node joined to the bridge by a veth (node i at 10.216.0.{i+1}/16), and one veth from the test's own namespace
/// to the bridge (10.216.0.254/16) so that the test reaches the nodes' APIs. No address outside 10.216.0.0/16 is
/// configured and no default route exists, so nothing a node or sandbox sends can leave these namespaces. Disposing
/// deletes the namespaces (and with them every veth) and the test's veth.
/// </summary>
internal sealed class ClusterNetwork : IAsyncDisposable
{
    private readonly string _tag;
    private readonly List<string> _namespaces = [];
    private bool _hostLink;

    private ClusterNetwork(string tag) => _tag = tag;

    public IReadOnlyList<string> NodeNamespaces => _namespaces.Skip(1).ToList();

    public static string NodeAddress(int index) => $"10.216.0.{index + 1}";

    public static async Task<ClusterNetwork> CreateAsync(int nodes, CancellationToken cancellationToken)
    {
        // Short: interface names stay within 15 characters (pc + 4 + suffix).
        var network = new ClusterNetwork(Guid.NewGuid().ToString("N")[..4]);
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
        var hub = $"pdkc-{_tag}-hub";
        await IpAsync(cancellationToken, "netns", "add", hub);
        _namespaces.Add(hub);
        await IpAsync(cancellationToken, "-n", hub, "link", "set", "lo", "up");
        await IpAsync(cancellationToken, "-n", hub, "link", "add", "br0", "type", "bridge");
        await IpAsync(cancellationToken, "-n", hub, "link", "set", "br0", "up");

        var host = $"pc{_tag}h";
        await IpAsync(cancellationToken, "link", "add", host, "type", "veth", "peer", "name", host + "p");
        _hostLink = true;
        await IpAsync(cancellationToken, "link", "set", host + "p", "netns", hub);
        await IpAsync(cancellationToken, "-n", hub, "link", "set", host + "p", "master", "br0", "up");
        await IpAsync(cancellationToken, "addr", "add", "10.216.0.254/16", "dev", host);
        await IpAsync(cancellationToken, "link", "set", host, "up");

        for (var i = 0; i < nodes; i++)
        {
            var ns = $"pdkc-{_tag}-n{i}";
            await IpAsync(cancellationToken, "netns", "add", ns);
            _namespaces.Add(ns);
            var link = $"pc{_tag}n{i}";
            await IpAsync(cancellationToken, "-n", ns, "link", "set", "lo", "up");
            await IpAsync(cancellationToken, "link", "add", link, "type", "veth", "peer", "name", link + "p");
            await IpAsync(cancellationToken, "link", "set", link, "netns", ns);
            await IpAsync(cancellationToken, "link", "set", link + "p", "netns", hub);
            await IpAsync(cancellationToken, "-n", hub, "link", "set", link + "p", "master", "br0", "up");
            await IpAsync(cancellationToken, "-n", ns, "addr", "add", NodeAddress(i) + "/16", "dev", link);
            await IpAsync(cancellationToken, "-n", ns, "link", "set", link, "up");
        }
    }

    /// <summary>
    /// Cuts node <paramref name="index"/> off from the other nodes, and only from them: blackhole routes to each other
    /// node's address in its namespace and to its address in theirs, so that nothing passes between it and them in
    /// either direction (silently dropped, as a pulled cable), while the test's own veth still reaches its API (which
    /// is what the test asserts on) and it still reaches PostgreSQL on its Unix socket.
    /// </summary>
    public async Task CutOffAsync(int index, int nodes, CancellationToken cancellationToken)
    {
        for (var other = 0; other < nodes; other++)
        {
            if (other == index)
            {
                continue;
            }
            await IpAsync(cancellationToken, "-n", NodeNamespaces[index], "route", "add", "blackhole", NodeAddress(other) + "/32");
            await IpAsync(cancellationToken, "-n", NodeNamespaces[other], "route", "add", "blackhole", NodeAddress(index) + "/32");
        }
    }

    /// <summary>Undoes <see cref="CutOffAsync"/>.</summary>
    public async Task ReconnectAsync(int index, int nodes, CancellationToken cancellationToken)
    {
        for (var other = 0; other < nodes; other++)
        {
            if (other == index)
            {
                continue;
            }
            await IpAsync(cancellationToken, "-n", NodeNamespaces[index], "route", "del", "blackhole", NodeAddress(other) + "/32");
            await IpAsync(cancellationToken, "-n", NodeNamespaces[other], "route", "del", "blackhole", NodeAddress(index) + "/32");
        }
    }

    public async ValueTask DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        foreach (var ns in Enumerable.Reverse(_namespaces))
        {
            await TryIpAsync(timeout.Token, "netns", "del", ns);
        }
        if (_hostLink)
        {
            // Usually gone with the hub namespace (deleting one end of a veth deletes both); this is for a half-built one.
            await TryIpAsync(timeout.Token, "link", "del", $"pc{_tag}h");
        }
    }

    private static async Task TryIpAsync(CancellationToken cancellationToken, params string[] args)
    {
        try
        {
            await IpAsync(cancellationToken, args);
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
    }

    private static async Task IpAsync(CancellationToken cancellationToken, params string[] args)
    {
        var start = new ProcessStartInfo("ip") { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start ip");
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.StandardOutput.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"ip {string.Join(' ', args)} exited with {process.ExitCode.ToString(CultureInfo.InvariantCulture)}: {await stderr}");
        }
    }
}
