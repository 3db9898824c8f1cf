namespace Paddock.Daemon.Runtimes;

/// <summary>
/// The one user-namespace remap range all sandboxes share: ids 0..Size-1 inside map to HostBase..HostBase+Size-1
/// outside, so root inside a sandbox is an unprivileged uid on the host.
/// This is Docker's <c>userns-remap</c> model rather than per-sandbox ranges with idmapped mounts, because runc
/// 1.1.5 (Debian 12) cannot idmap a mount: template files are shifted into the range once, when the template is
/// built (Templates/OwnershipShift), and every sandbox's overlay then shows them with the right owners.
/// Sandboxes are kept apart from each other by their namespaces and by file modes, not by distinct host uids.
/// </summary>
internal sealed record IdMapping(uint HostBase, uint Size)
{
    /// <summary>Docker's default for userns-remap (subuid "dockremap:100000:65536").</summary>
    public static IdMapping Default { get; } = new(100000, 65536);

    /// <summary>The host id of id <paramref name="inside"/> in a sandbox.</summary>
    public uint ToHost(uint inside) => inside < Size
        ? HostBase + inside
        : throw new ArgumentOutOfRangeException(nameof(inside), inside, $"id {inside} is outside the mapped range 0-{Size - 1}");

    /// <summary>Whether host id <paramref name="hostId"/> belongs to the range.</summary>
    public bool ContainsHostId(uint hostId) => hostId >= HostBase && hostId - HostBase < Size;
}
