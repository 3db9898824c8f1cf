using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Auth;

namespace Paddock.Daemon.Dashboard;

/// <summary>
/// The dashboard's sign-in: an API key given once is exchanged for a session cookie (HttpOnly, SameSite=Strict, Secure
/// under TLS) and a CSRF token that the page sends in <see cref="CsrfHeader"/> on every call that changes something.
/// The session holds the key in memory only and the key is checked again on every request, so a key revoked through
/// the API ends its sessions at once, and a session sees exactly what its key's team sees. Kept in memory: a restart
/// of paddockd signs everyone out, which is the safe direction.
/// </summary>
internal sealed class DashboardSessions(TimeProvider time)
{
    public const string CookieName = "paddock_session";

    public const string CsrfHeader = "X-Paddock-Csrf";

    /// <summary>A session unused this long is gone; each use moves its end.</summary>
    public static readonly TimeSpan IdleLifetime = TimeSpan.FromHours(8);

    /// <summary>
    /// Bounds the memory a flood of sign-ins can take (each needs a valid key, so only a key holder can flood): past
    /// it the least recently used session is dropped.
    /// </summary>
    public const int MaxSessions = 10_000;

    private readonly ConcurrentDictionary<string, Session> _sessions = new(StringComparer.Ordinal);

    internal sealed class Session(string apiKey, string csrf, DateTimeOffset lastUsed)
    {
        public string ApiKey { get; } = apiKey;

        public string Csrf { get; } = csrf;

        public long LastUsedTicks = lastUsed.UtcTicks;
    }

    public int Count => _sessions.Count;

    /// <summary>Starts a session for a key already checked; returns the cookie value and the CSRF token.</summary>
    public (string Token, string Csrf) Start(string apiKey)
    {
        Sweep();
        var token = Random();
        var csrf = Random();
        _sessions[Hash(token)] = new Session(apiKey, csrf, time.GetUtcNow());
        return (token, csrf);
    }

    /// <summary>The live session the cookie names, or null (none, unknown, or idle past <see cref="IdleLifetime"/>).</summary>
    public Session? Find(string? token)
    {
        if (string.IsNullOrEmpty(token) || token.Length > 100 || !_sessions.TryGetValue(Hash(token), out var session))
        {
            return null;
        }
        var now = time.GetUtcNow().UtcTicks;
        if (now - Interlocked.Read(ref session.LastUsedTicks) > IdleLifetime.Ticks)
        {
            _sessions.TryRemove(Hash(token), out _);
            return null;
        }
        Interlocked.Exchange(ref session.LastUsedTicks, now);
        return session;
    }

    public void End(string? token)
    {
        if (!string.IsNullOrEmpty(token))
        {
            _sessions.TryRemove(Hash(token), out _);
        }
    }

    /// <summary>
    /// The request is allowed to change something on this session's behalf: its CSRF header matches (compared in fixed
    /// time). A page of another site cannot read the token, and SameSite=Strict keeps the cookie off its requests anyway.
    /// </summary>
    public static bool CsrfMatches(Session session, string? presented) =>
        presented is { Length: > 0 }
        && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(presented), Encoding.ASCII.GetBytes(session.Csrf));

    /// <summary>Whether a request may be authenticated by the session cookie, and with which key (null: it may not, see the reason).</summary>
    public string? KeyFor(HttpContext http, out string? reason)
    {
        reason = null;
        var session = Find(http.Request.Cookies[CookieName]);
        if (session is null)
        {
            return null;
        }
        var method = http.Request.Method;
        if (!HttpMethods.IsGet(method) && !HttpMethods.IsHead(method) && !HttpMethods.IsOptions(method)
            && !CsrfMatches(session, http.Request.Headers[CsrfHeader]))
        {
            reason = $"missing or wrong {CsrfHeader} header: a dashboard session must send its CSRF token on every call that changes something";
            return null;
        }
        return session.ApiKey;
    }

    public void SetCookie(HttpContext http, string token) =>
        http.Response.Cookies.Append(CookieName, token, new CookieOptions
        {
            HttpOnly = true,
            SameSite = SameSiteMode.Strict,
            Secure = http.Request.IsHttps,
            Path = "/",
            MaxAge = IdleLifetime,
        });

    private void Sweep()
    {
        var now = time.GetUtcNow().UtcTicks;
        foreach (var (key, session) in _sessions)
        {
            if (now - Interlocked.Read(ref session.LastUsedTicks) > IdleLifetime.Ticks)
            {
                _sessions.TryRemove(key, out _);
            }
        }
        while (_sessions.Count >= MaxSessions)
        {
            var oldest = _sessions.MinBy(p => Interlocked.Read(ref p.Value.LastUsedTicks));
            _sessions.TryRemove(oldest.Key, out _);
        }
    }

    private static string Random() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    // The table is keyed by a hash of the cookie, so a memory dump or a timing of the lookup does not give live cookies.
    private static string Hash(string token) => Convert.ToHexString(SHA256.HashData(Encoding.ASCII.GetBytes(token)));
}
