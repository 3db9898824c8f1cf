namespace Paddock.Daemon.Volumes;

internal static partial class VolumesLog
{
    [LoggerMessage(EventId = 1500, Level = LogLevel.Information, Message = "volume {VolumeId} ('{Name}') created for team {TeamId}, {SizeBytes} bytes")]
    public static partial void Created(ILogger logger, string volumeId, string name, string teamId, long sizeBytes);

    [LoggerMessage(EventId = 1501, Level = LogLevel.Information, Message = "volume {VolumeId} ('{Name}') of team {TeamId} deleted")]
    public static partial void Deleted(ILogger logger, string volumeId, string name, string teamId);

    [LoggerMessage(EventId = 1502, Level = LogLevel.Warning, Message = "volume {VolumeId} ('{Name}') has a record but no image; mounts of it will fail")]
    public static partial void ImageMissing(ILogger logger, string volumeId, string name);

    [LoggerMessage(EventId = 1503, Level = LogLevel.Error, Message = "volume {VolumeId} could not be mounted or removed")]
    public static partial void MountFailed(ILogger logger, string volumeId, Exception exception);

    [LoggerMessage(EventId = 1504, Level = LogLevel.Information, Message = "removed the leftover volume directory {VolumeId} (no record: a create or delete cut short)")]
    public static partial void LeftoverRemoved(ILogger logger, string volumeId);
}
