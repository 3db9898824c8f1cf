using System.Collections.Immutable;
using System.Data.Common;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Cluster;

/// <summary>
/// The templates this node can start a sandbox from without building or fetching anything, by id and by name, for
/// its placement report (<see cref="NodeReport.Templates"/>): the built-in recipes whose current version is built in
/// its templates directory, and the recorded templates (builds, snapshots, imports) whose layers are all on its disk.
/// A report is asked on every create, so the set is kept in memory and recomputed in the background at most every
/// <see cref="Refresh"/> (a directory walk, one read of the templates table and a stat per layer): a template built
/// here shows at most that late, which only makes placement prefer this node a little later.
/// </summary>
internal sealed class NodeTemplates(IServiceProvider services, TimeProvider time)
{
    /// <summary>How stale the set may be before a report starts a recomputation.</summary>
    public static readonly TimeSpan Refresh = TimeSpan.FromSeconds(10);

    private ImmutableArray<string> _present = [];
    private long _computedAt = long.MinValue;
    private int _computing;

    /// <summary>The set as last computed (empty before the first computation ends); starts a recomputation when stale.</summary>
    public ImmutableArray<string> Present
    {
        get
        {
            var now = time.GetTimestamp();
            if ((_computedAt == long.MinValue || time.GetElapsedTime(Interlocked.Read(ref _computedAt), now) > Refresh)
                && Interlocked.CompareExchange(ref _computing, 1, 0) == 0)
            {
                _ = Task.Run(ComputeAsync);
            }
            return _present;
        }
    }

    /// <summary>Computes the set now (also the first report's, in the background); failures keep the last set.</summary>
    public async Task ComputeAsync()
    {
        try
        {
            var found = new HashSet<string>(StringComparer.Ordinal);
            if (services.GetService<TemplateStore>() is { } store)
            {
                foreach (var name in store.RecipeNames)
                {
                    if (store.RecipeFor(name) is { } recipe && store.Find(recipe.Name, store.VersionOf(recipe)) is not null)
                    {
                        found.Add(recipe.Name);
                        found.UnionWith(recipe.Aliases);
                    }
                }
            }
            if (services.GetService<ITemplateRecords>() is { } records)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                foreach (var record in await records.ListAsync(timeout.Token))
                {
                    if (record.Layers.Count > 0 && record.Layers.All(Directory.Exists))
                    {
                        found.Add(record.TemplateId);
                        found.UnionWith(record.Names);
                    }
                }
            }
            _present = [.. found.Order(StringComparer.Ordinal)];
        }
        catch (Exception ex) when (ex is DbException or IOException or UnauthorizedAccessException or OperationCanceledException or TimeoutException)
        {
            // The last set stays: a preference, not a filter, so a stale one costs at most a slower create.
        }
        finally
        {
            // A failed computation is tried again after the same wait, not on every create meanwhile.
            Interlocked.Exchange(ref _computedAt, time.GetTimestamp());
            Volatile.Write(ref _computing, 0);
        }
    }
}
