using Paddock.Client.Api;

namespace Paddock.Client;

/// <summary>
/// A team's volumes (E2B's <c>/volumes</c>): named disks with a size limit that outlive the sandboxes mounting them
/// (<see cref="SandboxOptions.VolumeMounts"/>). Every key sees its own team's volumes only.
/// </summary>
public static class Volumes
{
    /// <summary>Makes a volume; <paramref name="sizeMB"/> null takes the server's default size (paddockd's extension).</summary>
    public static async Task<VolumeInfo> CreateAsync(string name, int? sizeMB = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return ToInfo(await api.CreateVolumeAsync(new NewVolumeDto { Name = name, SizeMB = sizeMB }, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>The team's volumes (without their tokens; <see cref="GetAsync"/> has it).</summary>
    public static async Task<IReadOnlyList<VolumeInfo>> ListAsync(ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return (await api.ListVolumesAsync(cancellationToken).ConfigureAwait(false)).Select(ToInfo).ToArray();
    }

    /// <summary>One volume with its content token. Throws <see cref="SandboxException"/> (status 404) for an unknown id.</summary>
    public static async Task<VolumeInfo> GetAsync(string volumeId, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(volumeId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return ToInfo(await api.GetVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>
    /// Deletes a volume and its files. Throws <see cref="SandboxException"/> with status 409 while a sandbox has it
    /// mounted, 404 for an unknown id.
    /// </summary>
    public static async Task DeleteAsync(string volumeId, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(volumeId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        await api.DeleteVolumeAsync(volumeId, cancellationToken).ConfigureAwait(false);
    }

    private static VolumeInfo ToInfo(VolumeDto v) => new()
    {
        VolumeId = v.VolumeId ?? "",
        Name = v.Name ?? "",
        Token = v.Token,
        SizeMB = v.SizeMB,
    };
}

/// <summary>A volume as the control plane describes it.</summary>
public sealed record VolumeInfo
{
    /// <summary>The volume's id (what <see cref="Volumes.DeleteAsync"/> takes).</summary>
    public required string VolumeId { get; init; }

    /// <summary>The name a sandbox mounts it by.</summary>
    public required string Name { get; init; }

    /// <summary>The bearer token of E2B's volume content API; null in listings.</summary>
    public string? Token { get; init; }

    /// <summary>Its size limit in MiB, when the server says (paddockd does).</summary>
    public long? SizeMB { get; init; }
}
