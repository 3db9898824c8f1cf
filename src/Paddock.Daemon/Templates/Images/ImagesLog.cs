namespace Paddock.Daemon.Templates.Images;

/// <summary>Log events of image imports and registry pulls (ids 3150-3169).</summary>
internal static partial class ImagesLog
{
    [LoggerMessage(3150, LogLevel.Information, "Importing {Description} as template {TemplateId} of team {TeamId}: {Layers} layers")]
    public static partial void ImportStarted(ILogger logger, string description, string templateId, string teamId, int layers);

    [LoggerMessage(3151, LogLevel.Information, "Image template {TemplateId} ({Name}) imported: {Bytes} bytes")]
    public static partial void ImportFinished(ILogger logger, string templateId, string name, long bytes);

    [LoggerMessage(3152, LogLevel.Warning, "Image import refused: {Reason}")]
    public static partial void ImportRefused(ILogger logger, string reason);

    [LoggerMessage(3153, LogLevel.Information, "Image template {TemplateId}: {Line}")]
    public static partial void ImportNote(ILogger logger, string templateId, string line);

    [LoggerMessage(3154, LogLevel.Information, "Pulling {Reference} from {Registry}")]
    public static partial void PullStarted(ILogger logger, string reference, string registry);

    [LoggerMessage(3155, LogLevel.Information, "Blob {Digest} cached ({Bytes} bytes)")]
    public static partial void BlobCached(ILogger logger, string digest, long bytes);
}
