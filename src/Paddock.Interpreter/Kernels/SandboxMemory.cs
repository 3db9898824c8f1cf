namespace Paddock.Interpreter.Kernels;

/// <summary>
/// What /proc/meminfo says of the memory the sandbox may still use: MemTotal and MemAvailable, in bytes. Inside a
/// gVisor sandbox these are the sandbox's own (MemTotal is its memory limit: 524288 kB for 512 MiB, measured
/// 2026-12-07); on the runc tier they are the host's, so there the floor below matters only when the host itself
/// runs out.
/// </summary>
internal readonly record struct SandboxMemory(long TotalBytes, long AvailableBytes)
{
    /// <summary>The most the floor is: 128 MiB, about a second of a Python fork bomb's growth on gVisor (135 MiB/s).</summary>
    private const long FloorCap = 128L << 20;

    /// <summary>
    /// Below this much available memory a session that forked is killed (<see cref="ProcessWatchdog"/>): a fifth of
    /// the total, at most <see cref="FloorCap"/> (102 MiB of a 512 MiB sandbox).
    /// </summary>
    public long FloorBytes => Math.Min(TotalBytes / 5, FloorCap);

    public bool BelowFloor => AvailableBytes < FloorBytes;

    /// <summary>/proc/meminfo now; null when it cannot be read or lacks the two fields.</summary>
    public static SandboxMemory? Read()
    {
        string text;
        try
        {
            text = File.ReadAllText("/proc/meminfo");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        return Parse(text);
    }

    /// <summary>"MemTotal:  524288 kB" and "MemAvailable:  248156 kB" lines; null when either is missing.</summary>
    public static SandboxMemory? Parse(string meminfo)
    {
        long? total = null;
        long? available = null;
        foreach (var line in meminfo.AsSpan().EnumerateLines())
        {
            if (line.StartsWith("MemTotal:"))
            {
                total = Kilobytes(line["MemTotal:".Length..]);
            }
            else if (line.StartsWith("MemAvailable:"))
            {
                available = Kilobytes(line["MemAvailable:".Length..]);
            }
        }
        return total is { } t && available is { } a ? new SandboxMemory(t, a) : null;
    }

    private static long? Kilobytes(ReadOnlySpan<char> value)
    {
        value = value.Trim();
        if (value.EndsWith("kB"))
        {
            value = value[..^2].TrimEnd();
        }
        return long.TryParse(value, out var kb) ? kb * 1024 : null;
    }

    public override string ToString() => $"{AvailableBytes >> 20} MiB of {TotalBytes >> 20} MiB";
}
