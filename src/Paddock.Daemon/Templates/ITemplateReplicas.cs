namespace Paddock.Daemon.Templates;

/// <summary>
/// Where a template's files are when several daemons share one store (cluster mode): a template made on one node is
/// started on another by fetching its layers first, and deleted everywhere. <see cref="TemplateRegistry"/> calls it;
/// a single daemon holds every template it has a record of (<see cref="NoTemplateReplicas"/>); cluster mode's is
/// Cluster/ClusterTemplateReplicas.cs. Layers are named by their directory's name (a template id or a build cache
/// key): the same layer is <c>LayersDirectory/name</c> on every node, whatever the state directory.
/// </summary>
internal interface ITemplateReplicas
{
    /// <summary>
    /// The template's layers as paths on this host, fetching (and verifying) the ones this host does not have before
    /// returning. Throws <see cref="TemplateFetchException"/> when a layer cannot be had.
    /// </summary>
    Task<IReadOnlyList<string>> EnsureLocalAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken);

    /// <summary>Records that this node holds the layers a new template of this node's made (and their digests).</summary>
    Task PublishAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken);

    /// <summary>After the template's record is deleted: every other node that holds its own layer removes its copy.</summary>
    Task RemoveEverywhereAsync(TemplateRecord record, CancellationToken cancellationToken);
}

/// <summary>A template of this node's store is on this node: its records' paths are this host's.</summary>
internal sealed class NoTemplateReplicas : ITemplateReplicas
{
    public Task<IReadOnlyList<string>> EnsureLocalAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken) =>
        Task.FromResult(record.Layers);

    public Task PublishAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken) => Task.CompletedTask;

    public Task RemoveEverywhereAsync(TemplateRecord record, CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>A template whose files are on another node and could not be fetched from it: the API's 503.</summary>
internal sealed class TemplateFetchException(string message, Exception? inner = null) : Exception(message, inner);
