namespace Paddock.Agent.Files;

/// <summary>Log messages of the <c>/files</c> routes (event ids 2100-2199).</summary>
internal static partial class FilesLog
{
    [LoggerMessage(EventId = 2100, Level = LogLevel.Debug, Message = "Download of {Path} ended early: the client left")]
    public static partial void DownloadAborted(ILogger logger, string path);

    [LoggerMessage(EventId = 2101, Level = LogLevel.Debug, Message = "Upload to {Path} abandoned: the client left; nothing was replaced")]
    public static partial void UploadAborted(ILogger logger, string path);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Warning, Message = "Could not remove the temporary upload file {Path}")]
    public static partial void TempNotRemoved(ILogger logger, string path, Exception error);

    [LoggerMessage(EventId = 2103, Level = LogLevel.Warning, Message = "Reading {Path} failed during its download; the response was cut short")]
    public static partial void DownloadFailed(ILogger logger, string path, Exception error);
}
