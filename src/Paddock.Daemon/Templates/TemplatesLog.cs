using Microsoft.Extensions.Logging;

namespace Paddock.Daemon.Templates;

/// <summary>Log events of the template store (ids 3100-3199).</summary>
internal static partial class TemplatesLog
{
    [LoggerMessage(3100, LogLevel.Information, "Building template {Name} version {Version}")]
    public static partial void BuildStarted(ILogger logger, string name, string version);

    [LoggerMessage(3101, LogLevel.Information, "Template {Name}: {Line}")]
    public static partial void BuildProgress(ILogger logger, string name, string line);

    [LoggerMessage(3102, LogLevel.Information, "Template {Name} version {Version} built in {Seconds:0.0} s")]
    public static partial void BuildFinished(ILogger logger, string name, string version, double seconds);

    [LoggerMessage(3103, LogLevel.Information, "Template {Name} version {Version} is cached")]
    public static partial void Reused(ILogger logger, string name, string version);

    [LoggerMessage(3104, LogLevel.Warning, "Template {Name} version {Version} failed to build")]
    public static partial void BuildFailed(ILogger logger, string name, string version, Exception exception);

    [LoggerMessage(3110, LogLevel.Information, "Template {TemplateId}: snapshot of sandbox {SandboxId} on top of {ParentId}, {Bytes} bytes")]
    public static partial void SnapshotRegistered(ILogger logger, string templateId, string sandboxId, string parentId, long bytes);

    [LoggerMessage(3111, LogLevel.Information, "Template {TemplateId} deleted")]
    public static partial void TemplateDeleted(ILogger logger, string templateId);

    [LoggerMessage(3112, LogLevel.Warning, "Could not remove the unreferenced layer {Layer}; remove it by hand")]
    public static partial void LayerRemovalFailed(ILogger logger, string layer, Exception exception);

    [LoggerMessage(3113, LogLevel.Information, "Template {TemplateId} build {BuildId}: {Status}")]
    public static partial void BuildOfTemplateFinished(ILogger logger, string templateId, string buildId, string status);

    [LoggerMessage(3114, LogLevel.Warning, "Template {TemplateId} build {BuildId} failed")]
    public static partial void BuildOfTemplateFailed(ILogger logger, string templateId, string buildId, Exception exception);

    [LoggerMessage(3115, LogLevel.Information, "Snapshot of sandbox {SandboxId} keeps its files only: {Reason}")]
    public static partial void SnapshotWithoutMemory(ILogger logger, string sandboxId, string reason);

    [LoggerMessage(3116, LogLevel.Information, "Removed {Layer}: a daemon stopped half-way left it, and no template names it")]
    public static partial void LeftoverRemoved(ILogger logger, string layer);

    [LoggerMessage(3117, LogLevel.Information, "Template {TemplateId}: start image {Image} made in {Milliseconds} ms; its creates on this tier restore it")]
    public static partial void StartImageMade(ILogger logger, string templateId, string image, long milliseconds);

    [LoggerMessage(3118, LogLevel.Warning, "Template {TemplateId}: making its start image failed; its creates run the start command, next try in {RetrySeconds} s")]
    public static partial void StartImageFailed(ILogger logger, string templateId, long retrySeconds, Exception exception);

    [LoggerMessage(3119, LogLevel.Warning, "Could not destroy sandbox {SandboxId} that made a start image; the next start's recovery removes it")]
    public static partial void StartImageSandboxLeft(ILogger logger, string sandboxId, Exception exception);

    [LoggerMessage(3120, LogLevel.Information, "Removed start image {Directory}")]
    public static partial void StartImageRemoved(ILogger logger, string directory);
}
