using System.Net;

namespace Paddock.Client.Http;

/// <summary>
/// The HTTP plumbing every call goes through: one shared connection pool, deadlines, and the translation of
/// transport failures into the SDK's exceptions (no raw <see cref="HttpRequestException"/> escapes).
/// </summary>
internal static class HttpTransport
{
    // One pool for the process (HttpClient guidance: reuse handlers; PooledConnectionLifetime so DNS changes are seen).
    private static readonly Lazy<SocketsHttpHandler> SharedHandler = new(() => new SocketsHttpHandler
    {
        PooledConnectionLifetime = TimeSpan.FromMinutes(2),
        ConnectTimeout = TimeSpan.FromSeconds(30),
        AutomaticDecompression = DecompressionMethods.None,
        AllowAutoRedirect = true, // as E2B's SDK (redirect: "follow")
        UseCookies = false,
    });

    public static HttpClient CreateClient(ResolvedConnection connection) =>
        new(connection.HttpHandler ?? SharedHandler.Value, disposeHandler: false)
        {
            // Deadlines are applied per call with cancellation tokens, so that streams can outlive the request timeout.
            Timeout = Timeout.InfiniteTimeSpan,
        };

    /// <summary>A token that fires when the caller cancels or the request timeout passes.</summary>
    public static Deadline StartDeadline(TimeSpan timeout, CancellationToken caller) => new(timeout, caller);

    /// <summary>
    /// Maps an exception from an HTTP exchange to what the SDK promises: the caller's cancellation stays an
    /// <see cref="OperationCanceledException"/>, a passed deadline becomes <see cref="SandboxTimeoutException"/>,
    /// transport failures become <see cref="ServiceUnreachableException"/>; anything else is returned unchanged.
    /// </summary>
    public static Exception Translate(Exception ex, Uri address, CancellationToken caller, Deadline? deadline, string what)
    {
        switch (ex)
        {
            case OperationCanceledException when caller.IsCancellationRequested:
                return new OperationCanceledException($"{what} was cancelled", ex, caller);
            case OperationCanceledException when deadline is { Expired: true }:
                return new SandboxTimeoutException($"{what} did not finish within the request timeout of {deadline.Timeout.TotalSeconds:0.###} s", ex);
            case HttpRequestException http:
                return new ServiceUnreachableException(address, $"could not reach {address.GetLeftPart(UriPartial.Authority)}: {Describe(http)}", ex);
            case IOException io:
                return new ServiceUnreachableException(address, $"the connection to {address.GetLeftPart(UriPartial.Authority)} broke: {io.Message}", ex);
            default:
                return ex;
        }
    }

    private static string Describe(HttpRequestException ex)
    {
        // The innermost message names the cause ("Connection refused") without the framework's boilerplate.
        Exception inner = ex;
        while (inner.InnerException is not null)
        {
            inner = inner.InnerException;
        }
        return ReferenceEquals(inner, ex) ? ex.Message : $"{inner.Message}";
    }

    /// <summary>Whether an exception is one <see cref="Translate"/> would turn into an SDK exception.</summary>
    public static bool IsTransportFailure(Exception ex) => ex is HttpRequestException or IOException or OperationCanceledException;
}

/// <summary>A request deadline linked to the caller's token.</summary>
internal sealed class Deadline : IDisposable
{
    private readonly CancellationTokenSource _cts;

    public Deadline(TimeSpan timeout, CancellationToken caller)
    {
        Timeout = timeout;
        _cts = CancellationTokenSource.CreateLinkedTokenSource(caller);
        if (timeout != System.Threading.Timeout.InfiniteTimeSpan)
        {
            _cts.CancelAfter(timeout);
        }
        Caller = caller;
    }

    public TimeSpan Timeout { get; }

    public CancellationToken Caller { get; }

    public CancellationToken Token => _cts.Token;

    /// <summary>The deadline itself fired (not the caller).</summary>
    public bool Expired => _cts.IsCancellationRequested && !Caller.IsCancellationRequested;

    /// <summary>Stops the timer; the token then only follows the caller (used once a stream has started).</summary>
    public void Clear()
    {
        if (!_cts.IsCancellationRequested)
        {
            _cts.CancelAfter(System.Threading.Timeout.InfiniteTimeSpan);
        }
    }

    public void Dispose() => _cts.Dispose();
}
