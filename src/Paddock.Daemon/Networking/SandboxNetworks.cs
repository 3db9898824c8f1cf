using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Networking;

/// <summary>
/// Gives sandboxes a way out: a veth pair per sandbox (host end in the host's network namespace, "eth0" in the
/// sandbox's), a /31 from <see cref="NetworkOptions.Pool"/>, a default route, NAT to the outside and the sandbox's
/// <see cref="EgressPolicy"/> as nftables rules (<see cref="NftRules"/>); the <see cref="EgressProxy"/> that
/// checks domain allowlists; and the <see cref="DnsForwarder"/> that every sandbox resolves names through
/// (<see cref="ResolverAddress"/>, written into its /etc/resolv.conf by the tier: <see cref="ResolvConf"/>). The
/// runtime calls <see cref="AttachAsync"/> once the sandbox's network namespace exists and
/// <see cref="DetachAsync"/> when it destroys it. Attach and detach are the only places a link is made
/// or removed, so that a pool of ready links can replace them later.
/// </summary>
/// <remarks>
/// Why the host's namespace and not a "router" namespace between the host and the sandboxes: packets out still
/// have to leave through the host's uplink, so the host has to forward and NAT them either way, and a router
/// namespace adds a hop and a second rule set without taking the host's own services out of reach by itself. What
/// keeps the host safe is the input guard of <see cref="NftRules"/>: nothing from a sandbox link reaches a socket of
/// the host except what nftables itself redirected to the proxy. The veth's host end gets no IPv6 (no link-local
/// address to reach the host by), and sandboxes do not hold CAP_NET_ADMIN, so they cannot change their address
/// or route. Forwarding is switched on (net.ipv4.ip_forward=1), as Docker does; the forward guard confines what
/// it allows to sandbox links.
/// </remarks>
internal sealed class SandboxNetworks : IAsyncDisposable
{
    private readonly NetworkOptions _options;
    private readonly string _stateDirectory;
    private readonly ILogger _logger;
    private readonly IpNetwork _pool;
    private readonly AddressPoolClaim _claim;
    private readonly NftRules _rules;
    private readonly ConcurrentDictionary<string, SandboxLink> _links = new(StringComparer.Ordinal);
    private readonly Lock _slotsGate = new();
    private readonly HashSet<int> _slots = [];
    private readonly SemaphoreSlim _nftGate = new(1, 1);
    private readonly Lazy<Task> _ready;
    // The daemon's own network namespace, to return to after opening a netlink socket inside a sandbox's.
    private readonly SafeFileHandle _home;
    private readonly DaemonResolver _resolver;
    private readonly IConnectionSink? _connections;
    private EgressProxy? _proxy;
    private DnsForwarder? _dns;
    private ConnectionObserver? _observer;
    private int _logGroup;

    /// <param name="connections">
    /// Where the <see cref="ConnectionObserver"/> reports every outbound connection attempt of these sandboxes; null:
    /// no observer (the rules still log dropped packets to a group nobody reads, which the kernel discards).
    /// </param>
    public SandboxNetworks(NetworkOptions options, string stateDirectory, ILogger logger, IConnectionSink? connections = null)
    {
        _connections = connections;
        _options = options;
        _stateDirectory = stateDirectory;
        _logger = logger;
        if (IpNetwork.Parse(options.Pool).PrefixLength > 30)
        {
            throw new ArgumentException($"network pool {options.Pool} is too small: it needs at least a /30");
        }
        if (options.InterfacePrefix.Length is 0 or > 9 || !options.InterfacePrefix.All(char.IsAsciiLetterOrDigit))
        {
            throw new ArgumentException($"interface prefix '{options.InterfacePrefix}' must be 1-9 letters or digits");
        }
        if (options.TableName.Length is 0 or > 64 || !options.TableName.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') || !char.IsAsciiLetter(options.TableName[0]))
        {
            throw new ArgumentException($"nftables table name '{options.TableName}' must start with a letter and hold only letters, digits and '_'");
        }
        try
        {
            _resolver = DaemonResolver.From(options);
        }
        catch (FormatException ex)
        {
            throw new ArgumentException(ex.Message, nameof(options), ex);
        }
        _ready = new Lazy<Task>(() => InitializeAsync(CancellationToken.None));
        Directory.CreateDirectory(stateDirectory);
        _home = Namespaces.Open("/proc/self/ns/net", out var errno);
        if (_home.IsInvalid)
        {
            throw Errno.Exception("open", "/proc/self/ns/net", errno);
        }
        // Last, as it holds host-wide locks until disposed.
        _claim = AddressPoolClaim.Take(options, stateDirectory, logger);
        _pool = _claim.Pool;
        _rules = new NftRules(options.TableName, options.InterfacePrefix, _pool);
    }

    /// <summary>The proxy's port (after <see cref="EnsureReadyAsync"/>).</summary>
    public int ProxyPort => _proxy?.Port ?? 0;

    /// <summary>
    /// The DNS forwarder's port on the host (after <see cref="EnsureReadyAsync"/>); sandboxes use port 53 of
    /// <see cref="ResolverAddress"/>, which the table redirects here.
    /// </summary>
    public int DnsPort => _dns?.Port ?? 0;

    /// <summary>The one resolver address of every sandbox (UDP and TCP port 53), known before any link exists.</summary>
    public IPAddress ResolverAddress => _rules.ResolverAddress;

    /// <summary>
    /// What a tier writes as the sandbox's /etc/resolv.conf (a file it bind-mounts there, writable by the
    /// sandbox's root as in Docker): <see cref="ResolverAddress"/> only, so no sandbox needs an outside resolver.
    /// </summary>
    public string ResolvConf => $"# paddock: the daemon's DNS forwarder; it answers by this sandbox's network policy\nnameserver {ResolverAddress}\noptions edns0\n";

    public IpNetwork Pool => _pool;

    /// <summary>
    /// Rebuilds this daemon's table from nothing (removing whatever a crashed instance left in it) with the links of
    /// sandboxes that are still there, and starts the proxy. Runs once; every other call awaits it.
    /// </summary>
    public Task EnsureReadyAsync(CancellationToken cancellationToken) => _ready.Value.WaitAsync(cancellationToken);

    private async Task InitializeAsync(CancellationToken cancellationToken)
    {
        var nft = await ExternalCommand.RunAsync(_options.NftBinary, ["list", "tables"], cancellationToken);
        if (!nft.Succeeded)
        {
            throw new InvalidOperationException("nftables does not work here (apt-get install nftables; the kernel needs nf_tables): " + nft.Describe());
        }
        // Forwarding is what lets packets from a link leave through the uplink at all.
        await File.WriteAllTextAsync("/proc/sys/net/ipv4/ip_forward", "1\n", cancellationToken);

        if (_resolver.Servers.Count == 0)
        {
            NetworkLog.DnsNoServers(_logger);
        }
        _proxy = new EgressProxy(_options, FindBySandboxAddress, IsHostOrSandboxAddress, _resolver, _logger);
        _proxy.Start();
        // On all addresses, like the proxy: nftables' redirect rewrites the destination to the link's host address.
        _dns = new DnsForwarder(IPAddress.Any, _options.DnsPort, FindBySandboxAddress, _resolver, _logger);
        _dns.Start();
        // A group per table, so that daemons (and test runs) on one host do not ask for the same one; the observer
        // takes the next free one if it is held.
        var hash = 2166136261u;
        foreach (var c in _options.TableName)
        {
            hash = (hash ^ c) * 16777619u; // FNV-1a
        }
        _logGroup = 1024 + (int)(hash % 30000);
        if (_connections is not null)
        {
            try
            {
                _observer = ConnectionObserver.Start(_logGroup, FindBySandboxAddress, ResolverAddress, _pool, _connections, _logger);
                _logGroup = _observer.LogGroup;
                NetworkLog.ObserverStarted(_logger, _logGroup);
            }
            catch (IOException ex)
            {
                // Egress works without it; the audit trail then lacks connections, and the log says so.
                NetworkLog.ObserverFailed(_logger, ex);
            }
        }

        foreach (var file in Directory.EnumerateFiles(_stateDirectory, "*.json"))
        {
            if (SandboxLink.TryRead(file) is not { } link)
            {
                continue;
            }
            lock (_slotsGate)
            {
                _slots.Add(link.Slot);
            }
            _links[link.SandboxId] = link;
        }
        var readopted = await RebuildAsync(cancellationToken);
        NetworkLog.Ready(_logger, _options.TableName, _pool.ToString(), _proxy.Port, ResolverAddress.ToString(), _dns.Port, readopted);
    }

    /// <summary>
    /// Replaces the table with a fresh one holding the links this instance knows whose interface exists, in one
    /// transaction; returns how many. At start, and when the table was removed behind the daemon's back.
    /// </summary>
    private async Task<int> RebuildAsync(CancellationToken cancellationToken)
    {
        var script = _rules.DeleteTable() + _rules.Base(ProxyPort, DnsPort, _logGroup);
        var count = 0;
        foreach (var link in _links.Values)
        {
            // rtnetlink, not /sys/class/net (see DeleteInterfaceAsync).
            if (InterfaceExists(link.HostInterface))
            {
                script += _rules.Attach(link, ProxyPort, _logGroup);
                count++;
            }
        }
        await RunNftAsync(script, cancellationToken);
        return count;
    }

    /// <summary>Runs a link's script; if it fails because the table is gone, rebuilds the table (with the link) instead.</summary>
    private async Task ApplyLinkAsync(string script, CancellationToken cancellationToken)
    {
        try
        {
            await RunNftAsync(script, cancellationToken);
            return;
        }
        catch (IOException)
        {
            if (await TableExistsAsync(cancellationToken))
            {
                throw;
            }
        }
        NetworkLog.TableRebuilt(_logger, _options.TableName);
        await RebuildAsync(cancellationToken);
    }

    /// <summary>
    /// A new link's rules: straight over netlink when <see cref="NftNetlink"/> can express them (no nft process; the
    /// cold path), else (or when the table is gone, to rebuild it) as an nft script.
    /// </summary>
    private async Task AttachRulesAsync(SandboxLink link, CancellationToken cancellationToken)
    {
        if (NftNetlink.CanAttach(link))
        {
            // Under the gate that orders nft scripts, so that a table rebuild never runs between.
            await _nftGate.WaitAsync(cancellationToken);
            try
            {
                NftNetlink.Attach(_options.TableName, link, _logGroup);
                return;
            }
            catch (IOException ex) when (ex.HResult == Errno.ENOENT)
            {
                // The table or one of its maps is gone (flushed behind the daemon's back): rebuilt below, with the link.
            }
            finally
            {
                _nftGate.Release();
            }
        }
        await ApplyLinkAsync(_rules.Attach(link, ProxyPort, _logGroup), cancellationToken);
    }

    private async Task<bool> TableExistsAsync(CancellationToken cancellationToken) =>
        (await ExternalCommand.RunAsync(_options.NftBinary, ["list", "chain", "inet", _options.TableName, "guard_input"], cancellationToken)).Succeeded;

    /// <summary>
    /// Links the sandbox whose network namespace is held at <paramref name="netnsFile"/> and applies
    /// <paramref name="policy"/>. On failure nothing of the link is left.
    /// </summary>
    public async Task<SandboxLink> AttachAsync(string sandboxId, string netnsFile, EgressPolicy policy, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(cancellationToken);
        var slot = AllocateSlot();
        var hostValue = _pool.Address + (uint)(2 * slot);
        var link = new SandboxLink(
            sandboxId,
            slot,
            _options.InterfacePrefix + slot.ToString(CultureInfo.InvariantCulture),
            IpNetwork.ToAddress(hostValue),
            IpNetwork.ToAddress(hostValue + 1),
            policy);
        try
        {
            // Recorded first: a crash from here on leaves a record that cleanup finds.
            link.Write(RecordFile(sandboxId));
            _links[sandboxId] = link;
            // A link of an earlier crash may hold the name still (its namespace was kept alive by a socket).
            await DeleteInterfaceAsync(link.HostInterface, cancellationToken);
            // The rules name the host interface and need nothing of it: nft runs while the link is made. Until its
            // transaction lands the link is in no map of the table, so the guards drop whatever it sends.
            var rules = AttachRulesAsync(link, cancellationToken);
            try
            {
                // No program at all: rtnetlink from the daemon (RouteNetlink). The pair is made in one request with
                // the sandbox's end directly in its namespace, then each end configured through a socket of its own
                // namespace. Synchronous: each request is answered while send(2) runs (tens of microseconds).
                ConfigureLink(link, netnsFile);
            }
            finally
            {
                // Awaited whatever happened to the link, so that the cleanup's detach never races the rules' transaction.
                await rules;
            }
            NetworkLog.Attached(_logger, sandboxId, link.HostInterface, link.HostAddress.ToString(), link.SandboxAddress.ToString());
            return link;
        }
        catch
        {
            using var cleanup = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await DetachAsync(sandboxId, cleanup.Token);
            throw;
        }
    }

    /// <summary>Replaces the policy of a linked sandbox; takes effect for every packet from now on.</summary>
    public async Task UpdateAsync(string sandboxId, EgressPolicy policy, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(cancellationToken);
        if (!_links.TryGetValue(sandboxId, out var link))
        {
            throw new SandboxNotFoundException(sandboxId);
        }
        var updated = link with { Policy = policy };
        _links[sandboxId] = updated;
        try
        {
            await ApplyLinkAsync(_rules.Update(updated, ProxyPort, _logGroup), cancellationToken);
        }
        catch
        {
            _links[sandboxId] = link;
            throw;
        }
        updated.Write(RecordFile(sandboxId));
        NetworkLog.PolicyChanged(_logger, sandboxId);
    }

    /// <summary>The sandbox's link, or null when it has none.</summary>
    public SandboxLink? Find(string sandboxId) => _links.TryGetValue(sandboxId, out var link) ? link : null;

    /// <summary>
    /// Removes the sandbox's link (interface, rules, record, slot). Idempotent, also for a link that a crash left
    /// half made or whose record is all that is left.
    /// </summary>
    public async Task DetachAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(cancellationToken);
        var file = RecordFile(sandboxId);
        var link = _links.TryGetValue(sandboxId, out var known) ? known : SandboxLink.TryRead(file);
        if (link is null)
        {
            File.Delete(file);
            return;
        }
        await DeleteInterfaceAsync(link.HostInterface, cancellationToken);
        EndFlows(sandboxId);
        // As one nf_tables netlink batch, no nft process (NftNetlink); under the gate that orders nft scripts.
        await _nftGate.WaitAsync(cancellationToken);
        try
        {
            NftNetlink.Detach(_options.TableName, link.Slot, link.HostInterface);
        }
        catch (IOException ex) when (ex.HResult == Errno.ENOENT)
        {
            // No table (or none of its maps), so none of the link's rules either.
        }
        finally
        {
            _nftGate.Release();
        }
        File.Delete(file);
        _links.TryRemove(sandboxId, out _);
        lock (_slotsGate)
        {
            _slots.Remove(link.Slot);
        }
        NetworkLog.Detached(_logger, sandboxId);
    }

    /// <summary>
    /// Takes a paused sandbox's link down to its record: the interface and its rules go, the record, the slot and so
    /// the addresses stay reserved for <see cref="ReattachAsync"/> (a sandbox restored from a memory checkpoint has
    /// its address inside that checkpoint). Idempotent; a daemon restart keeps the reservation (the record is read
    /// back at start, and <see cref="RebuildAsync"/> gives rules only to links whose interface exists).
    /// </summary>
    public async Task SuspendAsync(string sandboxId, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(cancellationToken);
        var link = _links.TryGetValue(sandboxId, out var known) ? known : SandboxLink.TryRead(RecordFile(sandboxId));
        if (link is null)
        {
            return;
        }
        await DeleteInterfaceAsync(link.HostInterface, cancellationToken);
        EndFlows(sandboxId);
        await _nftGate.WaitAsync(cancellationToken);
        try
        {
            NftNetlink.Detach(_options.TableName, link.Slot, link.HostInterface);
        }
        catch (IOException ex) when (ex.HResult == Errno.ENOENT)
        {
            // No table (or none of its maps), so none of the link's rules either.
        }
        finally
        {
            _nftGate.Release();
        }
        NetworkLog.Detached(_logger, sandboxId);
    }

    /// <summary>
    /// Makes a suspended link (<see cref="SuspendAsync"/>) again in the network namespace at
    /// <paramref name="netnsFile"/>, with its recorded slot, addresses and policy. Throws
    /// <see cref="SandboxNotFoundException"/> when the sandbox has no link record.
    /// </summary>
    public async Task<SandboxLink> ReattachAsync(string sandboxId, string netnsFile, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(cancellationToken);
        var link = (_links.TryGetValue(sandboxId, out var known) ? known : SandboxLink.TryRead(RecordFile(sandboxId)))
            ?? throw new SandboxNotFoundException(sandboxId);
        lock (_slotsGate)
        {
            _slots.Add(link.Slot);
        }
        _links[sandboxId] = link;
        await DeleteInterfaceAsync(link.HostInterface, cancellationToken);
        var rules = AttachRulesAsync(link, cancellationToken);
        try
        {
            ConfigureLink(link, netnsFile);
        }
        finally
        {
            await rules;
        }
        NetworkLog.Attached(_logger, sandboxId, link.HostInterface, link.HostAddress.ToString(), link.SandboxAddress.ToString());
        return link;
    }

    /// <summary>Ids of sandboxes that have a link record (for the runtime's cleanup of leftovers).</summary>
    public IReadOnlyList<string> RecordedSandboxIds() => !Directory.Exists(_stateDirectory) ? [] :
        Directory.EnumerateFiles(_stateDirectory, "*.json").Select(Path.GetFileNameWithoutExtension).OfType<string>().ToList();

    /// <summary>Deletes this daemon's whole table (for tests and uninstall; sandboxes that still run lose their way out).</summary>
    public Task RemoveTableAsync(CancellationToken cancellationToken) => RunNftAsync(_rules.DeleteTable(), cancellationToken);

    private string RecordFile(string sandboxId) => Path.Combine(_stateDirectory, sandboxId + ".json");

    private int AllocateSlot()
    {
        var count = (int)Math.Min(_pool.Size / 2, int.MaxValue);
        lock (_slotsGate)
        {
            // Slot 0 would make the pool's network address a host address, and its sandbox address is every
            // sandbox's resolver (NftRules.ResolverAddress); start at 1.
            for (var slot = 1; slot < count; slot++)
            {
                // Not in a block of a configured pool that another daemon on the host holds (AddressPoolClaim).
                if (_claim.Holds(_pool.Address + (uint)(2 * slot)) && _slots.Add(slot))
                {
                    return slot;
                }
            }
        }
        // The runtime's start names the sandbox around this; the API answers 503 (the host is full, not the request wrong).
        throw new RuntimeCapacityException(
            $"the sandbox address pool {_pool} is exhausted: all {count - 1} addresses are in use; kill sandboxes, or give Runc:Network:Pool a larger range");
    }

    /// <summary>
    /// Ends the observer's flows of a sandbox whose interface is gone, so that each is reported now with its bytes
    /// (<see cref="ConnectionObserver.EndFlows"/>). A failure costs only the timeliness of those reports.
    /// </summary>
    private void EndFlows(string sandboxId)
    {
        try
        {
            _observer?.EndFlows(sandboxId);
        }
        catch (IOException ex)
        {
            NetworkLog.EndFlowsFailed(_logger, sandboxId, ex);
        }
    }

    private SandboxLink? FindBySandboxAddress(IPAddress address)
    {
        foreach (var link in _links.Values)
        {
            if (link.SandboxAddress.Equals(address))
            {
                return link;
            }
        }
        return null;
    }

    /// <summary>Never a destination of the proxy: the pool (host ends and sandboxes), loopback, and every address of the host.</summary>
    private bool IsHostOrSandboxAddress(IPAddress address)
    {
        if (IPAddress.IsLoopback(address) || _pool.Contains(address) || address.Equals(IPAddress.Any) || address.Equals(IPAddress.Broadcast))
        {
            return true;
        }
        foreach (var nic in System.Net.NetworkInformation.NetworkInterface.GetAllNetworkInterfaces())
        {
            foreach (var a in nic.GetIPProperties().UnicastAddresses)
            {
                if (a.Address.Equals(address))
                {
                    return true;
                }
            }
        }
        return false;
    }

    private static bool InterfaceExists(string name)
    {
        using var host = RouteNetlink.OpenHere();
        return host.IndexOf(name) != 0;
    }

    private static async Task DeleteInterfaceAsync(string name, CancellationToken cancellationToken)
    {
        // Asked of rtnetlink, not of /sys/class/net: /sys shows the namespace of whoever mounted it, so a daemon
        // started in a network namespace of its own without remounting /sys (nsenter --net, as the cluster tests and
        // bench/run cluster start nodes) saw none of its veths there, never deleted a killed sandbox's host end, and
        // the next sandbox given that slot failed with "create veth ... File exists" (bench/run cluster, 2026-12-07).
        // A link already gone is ENODEV, which DeleteLink answers with false.
        // On the thread pool: removing a veth waits for the kernel's RCU grace periods (milliseconds), not for us.
        await Task.Run(() =>
        {
            using var host = RouteNetlink.OpenHere();
            host.DeleteLink(name);
        }, cancellationToken);
    }

    /// <summary>
    /// Makes the link's veth pair and configures both ends: what <c>ip</c> did in two batches (five commands), as
    /// rtnetlink requests. Throws <see cref="IOException"/> naming the request that failed; the caller removes
    /// whatever was made.
    /// </summary>
    private void ConfigureLink(SandboxLink link, string netnsFile)
    {
        using var ns = Namespaces.Open(netnsFile, out var openErrno);
        if (ns.IsInvalid)
        {
            throw Errno.Exception("open", netnsFile, openErrno);
        }
        using var host = RouteNetlink.OpenHere();
        host.CreateVethPair(link.HostInterface, SandboxLink.SandboxInterface, ns);
        // No IPv6 on the host end: no link-local address for a sandbox to reach the host by. Written while the end is
        // still down, so that it never has one.
        File.WriteAllText($"/proc/sys/net/ipv6/conf/{link.HostInterface}/disable_ipv6", "1\n");
        var hostIndex = host.IndexOf(link.HostInterface);
        if (hostIndex == 0)
        {
            throw new IOException($"the host end {link.HostInterface} of a new sandbox link is gone");
        }
        host.AddAddress(hostIndex, link.HostAddress, 31);
        host.SetUp(hostIndex);

        using var inside = RouteNetlink.OpenIn(ns, _home, netnsFile);
        var index = inside.IndexOf(SandboxLink.SandboxInterface);
        if (index == 0)
        {
            throw new IOException($"the sandbox end {SandboxLink.SandboxInterface} of a new sandbox link is not in {netnsFile}");
        }
        inside.AddAddress(index, link.SandboxAddress, 31);
        inside.SetUp(index);
        inside.AddDefaultRoute(link.HostAddress, index);
    }

    private async Task RunNftAsync(string script, CancellationToken cancellationToken)
    {
        var file = Path.Combine(_stateDirectory, $".nft-{Guid.NewGuid():N}");
        await File.WriteAllTextAsync(file, script, cancellationToken);
        // One nft at a time: each script is one transaction, and they must not interleave with a table rebuild.
        await _nftGate.WaitAsync(cancellationToken);
        try
        {
            var result = await ExternalCommand.RunAsync(_options.NftBinary, ["-f", file], cancellationToken);
            if (!result.Succeeded)
            {
                throw new IOException("nft failed: " + result.Describe() + "\n--- script ---\n" + script);
            }
        }
        finally
        {
            _nftGate.Release();
            File.Delete(file);
        }
    }

    /// <summary>
    /// Stops the proxy. The table stays while links remain (sandboxes outlive the daemon and keep their policy);
    /// with none left it goes too, so a daemon that stopped cleanly leaves nothing in nftables.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (_proxy is not null)
        {
            await _proxy.DisposeAsync();
        }
        if (_dns is not null)
        {
            await _dns.DisposeAsync();
        }
        _observer?.Dispose();
        if (_ready.IsValueCreated && _ready.Value.IsCompletedSuccessfully && _links.IsEmpty && !RecordedSandboxIds().Any())
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await RemoveTableAsync(timeout.Token);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException)
            {
                // The next start rebuilds the table from nothing anyway.
            }
        }
        _nftGate.Dispose();
        _home.Dispose();
        _claim.Dispose();
    }
}
