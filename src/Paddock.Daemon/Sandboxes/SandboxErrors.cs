namespace Paddock.Daemon.Sandboxes;

/// <summary>No running sandbox has this id (never existed, killed, timed out or lost): the API's 404.</summary>
internal sealed class UnknownSandboxException(string sandboxId, string? detail = null)
    : Exception(detail is null ? $"sandbox '{sandboxId}' not found" : $"sandbox '{sandboxId}' not found: {detail}")
{
    public string SandboxId { get; } = sandboxId;
}

/// <summary>The create named a template this host does not have.</summary>
internal sealed class TemplateNotFoundException(string template)
    : Exception($"template '{template}' not found")
{
    public string Template { get; } = template;
}

/// <summary>The host already runs as many sandboxes as it is configured for.</summary>
internal sealed class SandboxCapacityException(int limit)
    : Exception($"this host already runs its maximum of {limit} sandboxes; kill one or raise --max-sandboxes")
{
    public int Limit { get; } = limit;
}

/// <summary>The create failed in the runtime (the record says why); the API's 500.</summary>
internal sealed class SandboxCreateException(string sandboxId, string message, Exception? inner)
    : Exception(message, inner)
{
    public string SandboxId { get; } = sandboxId;
}

/// <summary>The request asks for something this host cannot do (pause, volumes, egress rules...).</summary>
internal sealed class SandboxFeatureNotSupportedException(string message) : Exception(message);

/// <summary>The create would take the caller's team past one of its limits (the API's 429); the message names the limit.</summary>
internal sealed class TeamLimitException(string limit, string message) : Exception(message)
{
    /// <summary>Which limit: maxSandboxes, maxCpus or maxMemoryMB.</summary>
    public string Limit { get; } = limit;
}

/// <summary>The request conflicts with the sandbox's state (pausing a paused sandbox, forking one): the API's 409.</summary>
internal sealed class SandboxStateConflictException(string message) : Exception(message);
