namespace Paddock.Daemon.Runtimes;

/// <summary>The sandbox named does not exist in this runtime (never started, destroyed, or died and cleaned up).</summary>
internal sealed class SandboxNotFoundException : Exception
{
    public SandboxNotFoundException(string sandboxId)
        : base($"sandbox '{sandboxId}' does not exist")
    {
        SandboxId = sandboxId;
    }

    public string SandboxId { get; }
}

/// <summary>A sandbox could not be started; everything it had on the host has been removed again.</summary>
internal sealed class SandboxStartException : Exception
{
    public SandboxStartException(string sandboxId, string message, Exception? inner = null)
        : base($"sandbox '{sandboxId}' did not start: {message}", inner)
    {
        SandboxId = sandboxId;
    }

    public string SandboxId { get; }
}

/// <summary>Nothing inside the sandbox accepts connections on the port (connection refused or reset at connect).</summary>
internal sealed class SandboxPortUnreachableException : IOException
{
    public SandboxPortUnreachableException(string sandboxId, int port, Exception? inner = null)
        : base($"nothing listens on port {port} in sandbox '{sandboxId}'", inner)
    {
        SandboxId = sandboxId;
        Port = port;
    }

    public string SandboxId { get; }

    public int Port { get; }
}

/// <summary>The runtime gives sandboxes no network but loopback, so an egress policy cannot be applied.</summary>
internal sealed class SandboxNetworkUnsupportedException : Exception
{
    public SandboxNetworkUnsupportedException(string runtime)
        : base($"the {runtime} tier on this host gives sandboxes no network (sandbox egress is off), so a network policy other than deny-all cannot be applied")
    {
    }
}

/// <summary>
/// The runtime's own program cannot be run at all (removed, never installed, not executable): nothing can start until
/// an operator fixes the host, so the API answers 503 rather than blaming the request, and a daemon that meets it at
/// start exits with this message instead of a stack trace.
/// </summary>
internal sealed class RuntimeUnavailableException : IOException
{
    public RuntimeUnavailableException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}

/// <summary>
/// The host has run out of a piece every sandbox needs (its address pool, say): the request was fine and nothing of it
/// is left behind, but no sandbox can start until others end, so the API answers 503 rather than 500.
/// </summary>
internal sealed class RuntimeCapacityException : Exception
{
    public RuntimeCapacityException(string message)
        : base(message)
    {
    }
}

/// <summary>The sandbox's tier cannot pause, or cannot keep memory when it pauses; nothing was changed.</summary>
internal sealed class SandboxPauseUnsupportedException : Exception
{
    public SandboxPauseUnsupportedException(string tier, bool memory)
        : base(memory
            ? $"the {tier} isolation tier cannot keep a sandbox's memory when it pauses it; pause with memory: false (filesystem only), or use an isolation tier that keeps memory"
            : $"pausing is not supported by the {tier} isolation tier; the sandbox keeps running")
    {
        Tier = tier;
        Memory = memory;
    }

    public string Tier { get; }

    /// <summary>True: the tier pauses, but cannot keep memory (a 400); false: it cannot pause at all (a 501).</summary>
    public bool Memory { get; }
}

/// <summary>The sandbox's tier cannot fork a running sandbox (it has no memory capture); nothing was changed.</summary>
internal sealed class SandboxForkUnsupportedException(string tier)
    : Exception($"the {tier} isolation tier cannot fork a sandbox: it cannot capture a running sandbox's memory and processes; only a sandbox on a tier with memory checkpoints can be forked (README, \"Fork\")")
{
    public string Tier { get; } = tier;
}

/// <summary>Why a sandbox's snapshot cannot keep its memory (its tier cannot capture it, or it mounts volumes): the snapshot keeps its files only.</summary>
internal sealed class MemorySnapshotUnavailableException(string reason) : Exception(reason);
