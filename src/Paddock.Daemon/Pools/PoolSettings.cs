using System.Globalization;

namespace Paddock.Daemon.Pools;

/// <summary>
/// Warm pool sizes per template (<c>--pool base=8,other=2</c>, PADDOCK_POOL) and how many pool sandboxes may start
/// at once (<c>--pool-refill N</c>, PADDOCK_POOL_REFILL): the refill rate, bounded by what the host can start in
/// parallel. No entry: no pool, and creates behave as before.
/// </summary>
internal sealed record PoolSettings
{
    public static readonly PoolSettings None = new();

    public IReadOnlyDictionary<string, int> Sizes { get; init; } = new Dictionary<string, int>(StringComparer.Ordinal);

    /// <summary>Pool sandboxes starting at once, all pools together.</summary>
    public int RefillConcurrency { get; init; } = 2;

    public bool Enabled => Sizes.Values.Any(s => s > 0);

    /// <summary>Parses <c>NAME=SIZE[,NAME=SIZE...]</c>; throws <see cref="ArgumentException"/> with a message for the user.</summary>
    public static IReadOnlyDictionary<string, int> ParseSizes(string text)
    {
        var sizes = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var entry in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = entry.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0 || !int.TryParse(entry.AsSpan(eq + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var size) || size > 10_000)
            {
                throw new ArgumentException($"invalid pool '{entry}': expected TEMPLATE=SIZE with SIZE 0-10000");
            }
            sizes[entry[..eq]] = size;
        }
        return sizes;
    }
}
