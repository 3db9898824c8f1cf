using Paddock.Client.Api;

namespace Paddock.Client;

/// <summary>The templates sandboxes can be created from.</summary>
public static partial class Templates
{
    /// <summary>
    /// Deletes a template of the key's team (a filesystem snapshot); false when there is none. The server refuses
    /// (409) while sandboxes run from it or other templates are built on it.
    /// </summary>
    public static async Task<bool> DeleteAsync(string templateId, ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(templateId);
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        return await api.DeleteTemplateAsync(templateId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The templates the API key can use (GET /templates).</summary>
    public static async Task<IReadOnlyList<TemplateInfo>> ListAsync(ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        using var api = new ApiClient((connection ?? new ConnectionOptions()).Resolve());
        var templates = await api.ListTemplatesAsync(cancellationToken).ConfigureAwait(false);
        return templates.Select(t => new TemplateInfo
        {
            TemplateId = t.TemplateId ?? "",
            Names = t.Names is { Count: > 0 } names ? names : t.Aliases ?? [],
            BuildId = t.BuildId,
            CpuCount = t.CpuCount,
            MemoryMB = t.MemoryMB,
            DiskSizeMB = t.DiskSizeMB,
            CreatedAt = t.CreatedAt,
            SpawnCount = t.SpawnCount,
            BuildStatus = t.BuildStatus,
            EnvdVersion = t.EnvdVersion,
        }).ToArray();
    }
}
