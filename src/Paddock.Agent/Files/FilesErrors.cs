using System.Text.Json;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Files;

/// <summary>
/// Error answers of <c>/files</c>: envd.yaml's Error schema, <c>{"code": &lt;HTTP status&gt;, "message": "..."}</c>.
/// </summary>
internal static class FilesErrors
{
    /// <summary>The HTTP status envd.yaml gives each kind of failure (507 for a full disk, 401 for an unknown user).</summary>
    public static int StatusOf(ConnectCode code) => code switch
    {
        ConnectCode.NotFound => StatusCodes.Status404NotFound,
        ConnectCode.InvalidArgument or ConnectCode.FailedPrecondition or ConnectCode.AlreadyExists or ConnectCode.OutOfRange => StatusCodes.Status400BadRequest,
        ConnectCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        ConnectCode.PermissionDenied => StatusCodes.Status403Forbidden,
        ConnectCode.ResourceExhausted => StatusCodes.Status507InsufficientStorage,
        _ => StatusCodes.Status500InternalServerError,
    };

    public static Task WriteAsync(HttpContext http, ConnectException error) => WriteAsync(http, StatusOf(error.Code), error.Message);

    public static async Task WriteAsync(HttpContext http, int status, string message)
    {
        if (http.Response.HasStarted)
        {
            // Part of the body is out already: cutting the connection is the only way left to say it failed.
            http.Abort();
            return;
        }
        http.Response.Clear();
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("code", status);
            json.WriteString("message", message);
            json.WriteEndObject();
        }
        http.Response.ContentLength = buffer.Length;
        try
        {
            await http.Response.Body.WriteAsync(buffer.ToArray(), http.RequestAborted);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            // The client is gone; there is nobody to tell.
        }
    }
}
