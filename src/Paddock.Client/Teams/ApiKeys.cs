using Paddock.Client.Api;

namespace Paddock.Client;

/// <summary>
/// API keys (E2B's <c>/api-keys</c>): a key acts for its team. Without a team id these manage the calling key's own
/// team; with one they use paddockd's admin routes, which only keys of an admin team may call.
/// </summary>
public static class ApiKeys
{
    /// <summary>The unrevoked keys of the caller's team, or of <paramref name="teamId"/> (admin keys only).</summary>
    public static async Task<IReadOnlyList<ApiKeyInfo>> ListAsync(string? teamId = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var keys = await api.ListApiKeysAsync(teamId, cancellationToken).ConfigureAwait(false);
        return keys.Select(k => new ApiKeyInfo
        {
            Id = k.Id ?? "",
            Name = k.Name ?? "",
            Mask = Mask(k.Mask),
            CreatedAt = k.CreatedAt,
            LastUsed = k.LastUsed,
        }).ToArray();
    }

    /// <summary>Makes a key for the caller's team, or for <paramref name="teamId"/> (admin keys only). The key is in the answer, and nowhere else ever.</summary>
    public static async Task<CreatedApiKey> CreateAsync(string name, string? teamId = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var created = await api.CreateApiKeyAsync(teamId, name, cancellationToken).ConfigureAwait(false);
        return new CreatedApiKey
        {
            Id = created.Id ?? throw new SandboxException("the server answered a created key without an id"),
            Key = created.Key ?? throw new SandboxException("the server answered a created key without the key"),
            Name = created.Name ?? name,
            CreatedAt = created.CreatedAt,
        };
    }

    /// <summary>Renames a key of the caller's team; <see cref="NotFoundException"/> if the team has no such key.</summary>
    public static async Task RenameAsync(string keyId, string name, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        await api.RenameApiKeyAsync(keyId, name, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Revokes a key of the caller's team, or of <paramref name="teamId"/> (admin keys only): it is refused from the
    /// next request on. <see cref="NotFoundException"/> if there is no such key.
    /// </summary>
    public static async Task RevokeAsync(string keyId, string? teamId = null, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(keyId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        await api.RevokeApiKeyAsync(teamId, keyId, cancellationToken).ConfigureAwait(false);
    }

    private static string Mask(MaskDto? mask) =>
        mask is null ? "" : $"{mask.Prefix}{mask.MaskedValuePrefix}…{mask.MaskedValueSuffix}";
}
