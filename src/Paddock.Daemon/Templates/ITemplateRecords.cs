namespace Paddock.Daemon.Templates;

/// <summary>
/// The <c>templates</c> and <c>template_layer_cache</c> tables (schema step 3), in whichever store the daemon runs on
/// (<see cref="TemplateRecords"/>). Safe for concurrent use.
/// </summary>
internal interface ITemplateRecords
{
    /// <summary>Every record, oldest first.</summary>
    Task<IReadOnlyList<TemplateRecord>> ListAsync(CancellationToken cancellationToken);

    Task<TemplateRecord?> GetAsync(string templateId, CancellationToken cancellationToken);

    /// <summary>Inserts or replaces the record as a whole.</summary>
    Task UpsertAsync(TemplateRecord record, CancellationToken cancellationToken);

    /// <summary>Deletes the record; false when there was none.</summary>
    Task<bool> DeleteAsync(string templateId, CancellationToken cancellationToken);

    /// <summary>The cached layer of a build step (keyed by the step and everything before it), or null.</summary>
    Task<(string Layer, long SizeBytes)?> GetCachedLayerAsync(string cacheKey, CancellationToken cancellationToken);

    Task PutCachedLayerAsync(string cacheKey, string layer, long sizeBytes, DateTimeOffset createdAt, CancellationToken cancellationToken);
}
