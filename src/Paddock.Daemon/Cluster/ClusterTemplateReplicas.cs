using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Orleans.Runtime;
using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Dashboard;
using Paddock.Daemon.Native;
using Paddock.Daemon.Store;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// Cluster mode's <see cref="ITemplateReplicas"/>: templates made on one node start on any node. A node that makes a
/// layer (a snapshot, an import, a build step) records its digest (<see cref="LayerTransfer.Digest"/>) in
/// <c>cluster_layers</c> and itself as a holder in <c>cluster_layer_holders</c> (schema step 1003). A node asked to
/// start a template whose layer it lacks fetches the layer from an active holder before the create proceeds:
/// <c>GET /cluster/layers/{layer}?template=ID</c> on the holder's API (<see cref="MapLayerEndpoint"/>), with the
/// caller's key and <see cref="ClusterRouter.ForwardedHeader"/>, as the other node-to-node calls; the tar it answers
/// is unpacked beside the layers, checked against the recorded digest and renamed in only then
/// (<see cref="LayerTransfer.InstallAsync"/>), and this node is recorded as a holder. Concurrent creates that need one
/// layer share one fetch. HTTP, not a grain call: a layer is a stream of up to gigabytes, and Orleans messages are
/// not made for that; the holder checks the caller's key and team with the API's own check. A template delete asks
/// every other active holder's node grain to remove its copy; a holder that is down removes it at its next start
/// (TemplateRegistry.SweepLeftoversAsync: a layer no record names).
/// </summary>
internal sealed class ClusterTemplateReplicas(
    PostgresStore store, ClusterDirectory directory, ClusterMembership membership, IGrainFactory grains, IHttpContextAccessor requests,
    DashboardSessions sessions, DaemonOptions options, TimeProvider time, ILogger<ClusterTemplateReplicas> logger)
    : ITemplateReplicas, IDisposable
{
    /// <summary>The bound on one layer's fetch (connect, stream, unpack, verify): a large build layer is gigabytes.</summary>
    public static readonly TimeSpan FetchTimeout = TimeSpan.FromMinutes(10);

    /// <summary>As the team reload's bound (ClusterTeamFanout): a copy's removal is one directory delete.</summary>
    public static readonly TimeSpan RemoveTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<string, Lazy<Task>> _fetches = new(StringComparer.Ordinal);

    private readonly HttpClient _client = new(new SocketsHttpHandler
    {
        UseProxy = false,
        AllowAutoRedirect = false,
        UseCookies = false,
        ConnectTimeout = TimeSpan.FromSeconds(5),
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
    })
    { Timeout = Timeout.InfiniteTimeSpan };

    private string Self => options.Cluster!.NodeId;

    public async Task<IReadOnlyList<string>> EnsureLocalAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken)
    {
        var names = record.Layers.Select(NameOf).ToList();
        var digests = await DigestsAsync(names, cancellationToken);
        var local = new List<string>(record.Layers.Count);
        foreach (var (layer, name) in record.Layers.Zip(names))
        {
            // Not published: a built-in's rootfs (each node builds its own) or a layer made before step 1003.
            if (!digests.TryGetValue(name, out var digest))
            {
                local.Add(layer);
                continue;
            }
            var path = Path.Combine(layersDirectory, name);
            if (!Directory.Exists(path))
            {
                var key = KeyOfCurrentRequest(record.TemplateId, name);
                // One fetch per layer at a time, whoever asks; it runs to its own bound, not the first caller's.
                var fetch = _fetches.GetOrAdd(name, n => new Lazy<Task>(() => FetchAsync(record.TemplateId, n, digest, layersDirectory, key)));
                await fetch.Value.WaitAsync(cancellationToken);
            }
            local.Add(path);
        }
        return local;
    }

    public async Task PublishAsync(TemplateRecord record, string layersDirectory, CancellationToken cancellationToken)
    {
        var own = Path.TrimEndingDirectorySeparator(Path.GetFullPath(layersDirectory));
        var mine = record.Layers.Where(l => Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(l))) == own && Directory.Exists(l)).ToList();
        if (mine.Count == 0)
        {
            return;
        }
        var known = await DigestsAsync(mine.Select(NameOf).ToList(), cancellationToken);
        foreach (var layer in mine)
        {
            var name = NameOf(layer);
            if (!known.ContainsKey(name))
            {
                var clock = Stopwatch.StartNew();
                var digest = await Task.Run(() => LayerTransfer.Digest(layer), cancellationToken);
                var size = Files.AllocatedBytesBeneath(layer);
                await ExecuteAsync("""
                    INSERT INTO cluster_layers (layer, digest, size_bytes, created_at) VALUES (@layer, @digest, @size, @at)
                    ON CONFLICT (layer) DO NOTHING;
                    """, cancellationToken, ("@layer", name), ("@digest", digest), ("@size", size), ("@at", time.GetUtcNow().ToUnixTimeMilliseconds()));
                ClusterTemplatesLog.LayerPublished(logger, name, record.TemplateId, digest, size, clock.Elapsed.TotalMilliseconds);
            }
            await AddHolderAsync(name, cancellationToken);
        }
    }

    public async Task RemoveEverywhereAsync(TemplateRecord record, CancellationToken cancellationToken)
    {
        if (record.OwnLayer is not { } own)
        {
            return;
        }
        var name = NameOf(own);
        var holders = await HoldersAsync(name, cancellationToken);
        // The rows first: a node that misses the call below finds no record naming the layer at its next start.
        await ExecuteAsync("DELETE FROM cluster_layer_holders WHERE layer = @layer; DELETE FROM cluster_layers WHERE layer = @layer;", cancellationToken, ("@layer", name));
        await Task.WhenAll(holders.Where(h => h != Self).Select(async node =>
        {
            if (!membership.IsActive(node))
            {
                ClusterTemplatesLog.CopyNotRemoved(logger, name, node, "it is not an active member", null);
                return;
            }
            try
            {
                var removed = await grains.GetGrain<INodeGrain>(node).RemoveLayerCopyAsync(name).WaitAsync(RemoveTimeout, cancellationToken);
                ClusterTemplatesLog.CopyRemoved(logger, name, node, removed);
            }
            catch (Exception ex) when (ex is TimeoutException or OrleansException or InvalidOperationException)
            {
                ClusterTemplatesLog.CopyNotRemoved(logger, name, node, ex.GetType().Name, ex);
            }
        }));
    }

    /// <summary>Fetches, verifies and installs one layer from the first active holder that serves it whole.</summary>
    private async Task FetchAsync(string templateId, string name, string digest, string layersDirectory, string key)
    {
        try
        {
            await FetchFromHoldersAsync(templateId, name, digest, layersDirectory, key);
        }
        finally
        {
            // Done either way: the next create that lacks the layer (after a failure) tries again.
            _fetches.TryRemove(name, out _);
        }
    }

    private async Task FetchFromHoldersAsync(string templateId, string name, string digest, string layersDirectory, string key)
    {
        using var timeout = new CancellationTokenSource(FetchTimeout);
        var cancellationToken = timeout.Token;
        var holders = (await HoldersAsync(name, cancellationToken)).Where(h => h != Self && membership.IsActive(h)).OrderBy(_ => Random.Shared.Next()).ToList();
        if (holders.Count == 0)
        {
            throw new TemplateFetchException($"template {templateId} is not on this node, and no active node holds its layer {name}");
        }
        var failures = new List<string>();
        foreach (var node in holders)
        {
            var clock = Stopwatch.StartNew();
            try
            {
                var url = await directory.NodeUrlAsync(node, cancellationToken) ?? throw new IOException("its API address is not registered");
                using var request = new HttpRequestMessage(HttpMethod.Get, $"{url.TrimEnd('/')}/cluster/layers/{Uri.EscapeDataString(name)}?template={Uri.EscapeDataString(templateId)}");
                request.Headers.TryAddWithoutValidation(ApiKeyAuthenticator.HeaderName, key);
                request.Headers.TryAddWithoutValidation(ClusterRouter.ForwardedHeader, Self);
                using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
                if (response.StatusCode != HttpStatusCode.OK)
                {
                    throw new IOException($"HTTP {(int)response.StatusCode}: {Truncate(await response.Content.ReadAsStringAsync(cancellationToken))}");
                }
                await using var body = await response.Content.ReadAsStreamAsync(cancellationToken);
                var size = await LayerTransfer.InstallAsync(body, layersDirectory, name, digest, cancellationToken);
                await AddHolderAsync(name, cancellationToken);
                ClusterTemplatesLog.LayerFetched(logger, name, templateId, node, digest, size, clock.Elapsed.TotalMilliseconds);
                return;
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException || (ex is OperationCanceledException && timeout.IsCancellationRequested))
            {
                ClusterTemplatesLog.LayerFetchFailed(logger, name, templateId, node, ex.Message, ex);
                failures.Add($"from {node}: {ex.Message}");
            }
        }
        throw new TemplateFetchException($"template {templateId} is not on this node, and its layer {name} could not be fetched: {string.Join("; ", failures)}");
    }

    /// <summary>The caller's key (header or dashboard session), which the holder checks again; a create always has one.</summary>
    private string KeyOfCurrentRequest(string templateId, string name)
    {
        string? key = null;
        if (requests.HttpContext is { } http)
        {
            try
            {
                key = DashboardEndpoints.KeyOf(http, sessions);
            }
            catch (InvalidOperationException)
            {
                // No key on this request (a warm pool's fill runs outside any request).
            }
        }
        return key is { Length: > 0 }
            ? key
            : throw new TemplateFetchException($"template {templateId} is not on this node; its layer {name} is fetched only for a request with an API key");
    }

    private async Task<Dictionary<string, string>> DigestsAsync(IReadOnlyList<string> names, CancellationToken cancellationToken)
    {
        var found = new Dictionary<string, string>(StringComparer.Ordinal);
        if (names.Count == 0)
        {
            return found;
        }
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT layer, digest FROM cluster_layers WHERE layer = ANY(@layers);").With("@layers", names.ToArray());
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found[reader.GetString(0)] = reader.GetString(1);
        }
        return found;
    }

    private async Task<List<string>> HoldersAsync(string name, CancellationToken cancellationToken)
    {
        var found = new List<string>();
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT node_id FROM cluster_layer_holders WHERE layer = @layer ORDER BY held_since;").With("@layer", name);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            found.Add(reader.GetString(0));
        }
        return found;
    }

    private Task AddHolderAsync(string name, CancellationToken cancellationToken) => ExecuteAsync("""
        INSERT INTO cluster_layer_holders (layer, node_id, held_since) VALUES (@layer, @node, @at) ON CONFLICT (layer, node_id) DO NOTHING;
        """, cancellationToken, ("@layer", name), ("@node", Self), ("@at", time.GetUtcNow().ToUnixTimeMilliseconds()));

    private async Task ExecuteAsync(string sql, CancellationToken cancellationToken, params (string Name, object Value)[] parameters)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command(sql);
        foreach (var (parameterName, value) in parameters)
        {
            command.With(parameterName, value);
        }
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    internal static string NameOf(string layer) => Path.GetFileName(Path.TrimEndingDirectorySeparator(layer));

    private static string Truncate(string text) => text.Length > 300 ? text[..300] + "…" : text;

    /// <summary>
    /// <c>GET /cluster/layers/{layer}?template=ID</c>: the tar of a layer this node holds, for another node of the
    /// cluster that starts the template (<see cref="FetchAsync"/>). Served only to a caller that passed the API's key
    /// check (the key middleware runs before; a key that does not authenticate gets its 401), whose team may see the
    /// template, which names the layer, and that comes from an active node: <see cref="ClusterRouter.ForwardedHeader"/>
    /// names another active member and the connection comes from that member's registered API address. Anything
    /// else is a 403 or 404 that says which.
    /// </summary>
    public static void MapLayerEndpoint(IEndpointRouteBuilder app) => app.MapGet("/cluster/layers/{layer}", async (HttpContext http, string layer, string? template) =>
    {
        var caller = http.GetCaller();
        var options = http.RequestServices.GetRequiredService<DaemonOptions>();
        if (options.Cluster is not { } cluster || http.RequestServices.GetService<ClusterMembership>() is not { } membership)
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, "this paddockd does not run in cluster mode (--cluster)");
        }
        var from = http.Request.Headers[ClusterRouter.ForwardedHeader].ToString();
        if (from.Length == 0 || from == cluster.NodeId || !membership.IsActive(from))
        {
            throw new ApiRequestException(StatusCodes.Status403Forbidden, "template layers are served only to the cluster's other active nodes");
        }
        var url = await http.RequestServices.GetRequiredService<ClusterDirectory>().NodeUrlAsync(from, http.RequestAborted);
        var remote = http.Connection.RemoteIpAddress is { } ip && ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : http.Connection.RemoteIpAddress;
        if (url is null || !Uri.TryCreate(url, UriKind.Absolute, out var uri) || !IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) || !address.Equals(remote))
        {
            throw new ApiRequestException(StatusCodes.Status403Forbidden, $"template layers are served only to the cluster's nodes: this request does not come from node {from}'s address");
        }
        if (string.IsNullOrEmpty(template))
        {
            throw new ApiRequestException(StatusCodes.Status400BadRequest, "the template the layer belongs to is required: ?template=ID");
        }
        var registry = http.RequestServices.GetRequiredService<TemplateRegistry>();
        var record = await registry.GetAsync(template, http.RequestAborted);
        if (record is null || !record.IsVisibleTo(caller.TeamId) || !record.Layers.Any(l => NameOf(l) == layer))
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, $"no template {template} with layer {layer}");
        }
        if (layer.StartsWith('.') || !Directory.Exists(Path.Combine(registry.LayersDirectory, layer)))
        {
            throw new ApiRequestException(StatusCodes.Status404NotFound, $"node {cluster.NodeId} does not hold layer {layer}");
        }
        http.Response.ContentType = "application/x-tar";
        await LayerTransfer.WriteArchiveAsync(registry.LayersDirectory, layer, http.Response.Body, http.RequestAborted);
        return Results.Empty;
    });

    public void Dispose() => _client.Dispose();
}

internal static partial class ClusterTemplatesLog
{
    [LoggerMessage(EventId = 1750, Level = LogLevel.Information, Message = "layer {Layer} of template {TemplateId} published: digest {Digest}, {Bytes} bytes, digest computed in {Milliseconds:F0} ms")]
    public static partial void LayerPublished(ILogger logger, string layer, string templateId, string digest, long bytes, double milliseconds);

    [LoggerMessage(EventId = 1751, Level = LogLevel.Information, Message = "layer {Layer} of template {TemplateId} fetched from node {Node}, verified ({Digest}), {Bytes} bytes in {Milliseconds:F0} ms")]
    public static partial void LayerFetched(ILogger logger, string layer, string templateId, string node, string digest, long bytes, double milliseconds);

    [LoggerMessage(EventId = 1752, Level = LogLevel.Warning, Message = "layer {Layer} of template {TemplateId} could not be fetched from node {Node}: {Error}")]
    public static partial void LayerFetchFailed(ILogger logger, string layer, string templateId, string node, string error, Exception exception);

    [LoggerMessage(EventId = 1753, Level = LogLevel.Information, Message = "template layer {Layer} deleted: node {Node} asked to remove its copy (removed: {Removed})")]
    public static partial void CopyRemoved(ILogger logger, string layer, string node, bool removed);

    [LoggerMessage(EventId = 1754, Level = LogLevel.Warning, Message = "template layer {Layer} deleted: node {Node} did not remove its copy now ({Error}); it does at its next start")]
    public static partial void CopyNotRemoved(ILogger logger, string layer, string node, string error, Exception? exception);
}
