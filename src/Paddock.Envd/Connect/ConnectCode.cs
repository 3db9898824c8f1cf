namespace Paddock.Envd.Connect;

/// <summary>
/// Connect RPC error codes, with the names used on the wire (connectrpc.com/docs/protocol, "Error Codes").
/// </summary>
public enum ConnectCode
{
    /// <summary>The operation was cancelled, typically by the caller.</summary>
    Canceled = 1,
    /// <summary>An error with no better code.</summary>
    Unknown = 2,
    /// <summary>The request is malformed or names something invalid.</summary>
    InvalidArgument = 3,
    /// <summary>The deadline passed before the operation finished.</summary>
    DeadlineExceeded = 4,
    /// <summary>What the request names does not exist.</summary>
    NotFound = 5,
    /// <summary>What the request would create exists already.</summary>
    AlreadyExists = 6,
    /// <summary>The caller may not do this.</summary>
    PermissionDenied = 7,
    /// <summary>A quota or resource ran out.</summary>
    ResourceExhausted = 8,
    /// <summary>The system is not in the state the operation needs.</summary>
    FailedPrecondition = 9,
    /// <summary>The operation was aborted, typically by a concurrency conflict.</summary>
    Aborted = 10,
    /// <summary>A value is outside its valid range.</summary>
    OutOfRange = 11,
    /// <summary>The method is not implemented.</summary>
    Unimplemented = 12,
    /// <summary>An invariant broke inside the server.</summary>
    Internal = 13,
    /// <summary>The service is unavailable for now; a retry may work.</summary>
    Unavailable = 14,
    /// <summary>Data was lost or corrupted.</summary>
    DataLoss = 15,
    /// <summary>The caller has no valid credentials.</summary>
    Unauthenticated = 16,
}

/// <summary>Wire names and HTTP status codes of <see cref="ConnectCode"/>.</summary>
public static class ConnectCodes
{
    /// <summary>The snake_case name Connect puts in the <c>code</c> field of an error.</summary>
    public static string ToWire(this ConnectCode code) => code switch
    {
        ConnectCode.Canceled => "canceled",
        ConnectCode.Unknown => "unknown",
        ConnectCode.InvalidArgument => "invalid_argument",
        ConnectCode.DeadlineExceeded => "deadline_exceeded",
        ConnectCode.NotFound => "not_found",
        ConnectCode.AlreadyExists => "already_exists",
        ConnectCode.PermissionDenied => "permission_denied",
        ConnectCode.ResourceExhausted => "resource_exhausted",
        ConnectCode.FailedPrecondition => "failed_precondition",
        ConnectCode.Aborted => "aborted",
        ConnectCode.OutOfRange => "out_of_range",
        ConnectCode.Unimplemented => "unimplemented",
        ConnectCode.Internal => "internal",
        ConnectCode.Unavailable => "unavailable",
        ConnectCode.DataLoss => "data_loss",
        ConnectCode.Unauthenticated => "unauthenticated",
        _ => "unknown",
    };

    /// <summary>Parses a wire name; unknown names map to <see cref="ConnectCode.Unknown"/>.</summary>
    public static ConnectCode FromWire(string? name)
    {
        for (var c = ConnectCode.Canceled; c <= ConnectCode.Unauthenticated; c++)
        {
            if (string.Equals(c.ToWire(), name, StringComparison.Ordinal))
            {
                return c;
            }
        }
        return ConnectCode.Unknown;
    }

    /// <summary>The HTTP status a unary error is sent with (Connect protocol, "Error Codes" table).</summary>
    public static int ToHttpStatus(this ConnectCode code) => code switch
    {
        ConnectCode.Canceled => 499,
        ConnectCode.InvalidArgument => 400,
        ConnectCode.DeadlineExceeded => 504,
        ConnectCode.NotFound => 404,
        ConnectCode.AlreadyExists => 409,
        ConnectCode.PermissionDenied => 403,
        ConnectCode.ResourceExhausted => 429,
        ConnectCode.FailedPrecondition => 400,
        ConnectCode.Aborted => 409,
        ConnectCode.OutOfRange => 400,
        ConnectCode.Unimplemented => 501,
        ConnectCode.Unavailable => 503,
        ConnectCode.Unauthenticated => 401,
        _ => 500,
    };

    /// <summary>The code a client infers from an HTTP status when the body carries none.</summary>
    public static ConnectCode FromHttpStatus(int status) => status switch
    {
        400 => ConnectCode.Internal,
        401 => ConnectCode.Unauthenticated,
        403 => ConnectCode.PermissionDenied,
        404 => ConnectCode.Unimplemented,
        429 or 502 or 503 or 504 => ConnectCode.Unavailable,
        _ => ConnectCode.Unknown,
    };
}
