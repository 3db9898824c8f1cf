namespace Paddock.Daemon.Volumes;

/// <summary>
/// A volume request refused, with the HTTP status it answers (400 bad name or path, 404 unknown volume, 409 name taken
/// or volume mounted, 429 team quota, 507 volume full) and a message that says what was wrong.
/// </summary>
internal sealed class VolumeException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;

    public static VolumeException BadRequest(string message) => new(StatusCodes.Status400BadRequest, message);

    public static VolumeException NotFound(string volume) => new(StatusCodes.Status404NotFound, $"volume '{volume}' not found");
}
