using System.Text.Json;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Api;

/// <summary>A request the API refuses, with the status and message the client sees.</summary>
internal sealed class ApiRequestException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;

    public static ApiRequestException BadRequest(string message) => new(StatusCodes.Status400BadRequest, message);
}

/// <summary>
/// Turns the expected failures of the control plane into E2B's <c>{code, message}</c> bodies with E2B's status codes.
/// Unexpected exceptions become a 500 with a generic message; their details go to the log only.
/// </summary>
internal sealed partial class ApiErrorMiddleware(RequestDelegate next, ILogger<ApiErrorMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext http)
    {
        try
        {
            await next(http);
        }
        catch (Exception ex) when (Map(ex) is { } error && !http.Response.HasStarted)
        {
            if (error.Code >= 500)
            {
                LogServerError(logger, http.Request.Method, http.Request.Path, ex);
            }
            await WriteAsync(http, error.Code, error.Message);
        }
        catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
        }
    }

    public static Task WriteAsync(HttpContext http, int status, string message)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(http.Response.Body, new ErrorResponse(status, message), ApiJsonContext.Default.ErrorResponse, http.RequestAborted);
    }

    internal static ErrorResponse? Map(Exception ex) => ex switch
    {
        ApiRequestException e => new(e.StatusCode, e.Message),
        Volumes.VolumeException e => new(e.StatusCode, e.Message),
        UnknownSandboxException e => new(StatusCodes.Status404NotFound, e.Message),
        // The runtime lost it between the daemon's check and the call (killed behind the daemon's back).
        Runtimes.SandboxNotFoundException e => new(StatusCodes.Status404NotFound, e.Message),
        TemplateNotFoundException e => new(StatusCodes.Status400BadRequest, e.Message),
        // Cluster mode: the template's files are on another node that could not give them (down, or a bad copy).
        Templates.TemplateFetchException e => new(StatusCodes.Status503ServiceUnavailable, e.Message),
        SandboxFeatureNotSupportedException e => new(StatusCodes.Status400BadRequest, e.Message),
        Runtimes.SandboxNetworkUnsupportedException e => new(StatusCodes.Status409Conflict, e.Message),
        // The request is well formed but the sandbox's tier cannot do it (runc and memory: true): the message names the tier.
        Runtimes.SandboxPauseUnsupportedException { Memory: true } e => new(StatusCodes.Status400BadRequest, e.Message),
        Runtimes.SandboxPauseUnsupportedException e => new(StatusCodes.Status501NotImplemented, e.Message),
        // A fork of a sandbox whose tier has no memory capture: refused whole, naming the tier (README, "Fork").
        Runtimes.SandboxForkUnsupportedException e => new(StatusCodes.Status400BadRequest, e.Message),
        SandboxStateConflictException e => new(StatusCodes.Status409Conflict, e.Message),
        SandboxCapacityException e => new(StatusCodes.Status429TooManyRequests, e.Message),
        TeamLimitException e => new(StatusCodes.Status429TooManyRequests, e.Message),
        UnknownIsolationException e => new(StatusCodes.Status400BadRequest, e.Message),
        IsolationForbiddenException e => new(StatusCodes.Status403Forbidden, e.Message),
        UnknownKeyException e => new(StatusCodes.Status404NotFound, e.Message),
        Teams.UnknownTeamException e => new(StatusCodes.Status404NotFound, e.Message),
        Teams.TeamConflictException e => new(StatusCodes.Status409Conflict, e.Message),
        Store.DuplicateNameException e => new(StatusCodes.Status409Conflict, e.Message),
        // Before the generic cases: a full state disk is the operator's to fix, and the caller should know it is not
        // their request (issue 5's fault test fills the disk).
        _ when IsDiskFull(ex) => new(StatusCodes.Status507InsufficientStorage, "the daemon's state disk is full (no space left on device); free space on it and retry"),
        // PostgreSQL down, restarting or unreachable (--store postgres://…): Npgsql marks these transient. Not the
        // request's fault, and the pool reconnects by itself once the database is back.
        _ when Chain(ex).OfType<Npgsql.NpgsqlException>().FirstOrDefault() is { IsTransient: true } => new(StatusCodes.Status503ServiceUnavailable,
            "the state database (PostgreSQL) cannot be reached; retry shortly"),
        // The host cannot start anything (its runtime's program is gone): not the request's fault, and retryable once
        // an operator fixes the host.
        _ when Chain(ex).OfType<Runtimes.RuntimeUnavailableException>().FirstOrDefault() is { } e => new(StatusCodes.Status503ServiceUnavailable, e.Message),
        _ when Chain(ex).OfType<Runtimes.RuntimeCapacityException>().FirstOrDefault() is { } e => new(StatusCodes.Status503ServiceUnavailable, e.Message),
        SandboxCreateException e => new(StatusCodes.Status500InternalServerError, e.Message),
        OperationCanceledException => null,
        _ => new(StatusCodes.Status500InternalServerError, "internal error; the daemon's log has the details"),
    };

    /// <summary>The exception and its inner exceptions, outermost first.</summary>
    private static IEnumerable<Exception> Chain(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            yield return e;
        }
    }

    /// <summary>ENOSPC anywhere in the chain: an IOException (HResult is the errno on Linux) or SQLite's SQLITE_FULL (13).</summary>
    private static bool IsDiskFull(Exception ex) => Chain(ex).Any(e =>
        e is IOException { HResult: 28 } || e.Message.Contains("No space left on device", StringComparison.Ordinal)
        || e is Microsoft.Data.Sqlite.SqliteException { SqliteErrorCode: 13 });

    [LoggerMessage(EventId = 600, Level = LogLevel.Error, Message = "{Method} {Path} failed")]
    private static partial void LogServerError(ILogger logger, string method, string path, Exception exception);
}
