using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Paddock.Daemon.Tls;

/// <summary>
/// The certificate Kestrel presents, read from a PEM certificate (chain) and key file and read again when either
/// file changes: a renewal (certbot, an ACME client, cert-manager) takes effect at the next handshake, without a
/// restart. Each handshake asks for the certificate; the files' times are looked at no more than once a second, and a
/// pair that does not load (half-written, key and certificate from different renewals) leaves the previous one in use.
/// </summary>
internal sealed class ServerCertificate
{
    private static readonly TimeSpan CheckEvery = TimeSpan.FromSeconds(1);

    private readonly string _certPath;
    private readonly string _keyPath;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private volatile Loaded _current;
    private long _nextCheckTicks;

    public ServerCertificate(string certPath, string keyPath, TimeProvider time)
    {
        _certPath = certPath;
        _keyPath = keyPath;
        _time = time;
        _current = Load(out var error) ?? throw new ArgumentException($"cannot load the TLS certificate {certPath} with the key {keyPath}: {error}");
    }

    /// <summary>Where reloads and failed loads are logged (the host's logger, set once it exists).</summary>
    public ILogger Logger { get; set; } = Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;

    /// <summary>The certificate file (for messages).</summary>
    public string CertPath => _certPath;

    /// <summary>The certificate to present now.</summary>
    public X509Certificate2 Current
    {
        get
        {
            var now = _time.GetTimestamp();
            if (now >= Interlocked.Read(ref _nextCheckTicks))
            {
                lock (_gate)
                {
                    if (now >= _nextCheckTicks)
                    {
                        _nextCheckTicks = now + (long)(CheckEvery.TotalSeconds * _time.TimestampFrequency);
                        ReloadIfChanged();
                    }
                }
            }
            return _current.Certificate;
        }
    }

    private void ReloadIfChanged()
    {
        var stamp = Stamp();
        if (stamp == _current.Stamp)
        {
            return;
        }
        if (Load(out _) is { } loaded)
        {
            _current = loaded;
            TlsLog.Reloaded(Logger, _certPath, loaded.Certificate.Subject, loaded.Certificate.NotAfter);
        }
    }

    private Loaded? Load(out string? error)
    {
        error = null;
        var stamp = Stamp();
        try
        {
            // The previous certificate is not disposed: a handshake in progress may still hold it.
            return new Loaded(X509Certificate2.CreateFromPemFile(_certPath, _keyPath), stamp);
        }
        catch (Exception ex) when (ex is CryptographicException or IOException or UnauthorizedAccessException or ArgumentException)
        {
            TlsLog.LoadFailed(Logger, _certPath, _keyPath, ex.Message);
            error = ex.Message;
            return null;
        }
    }

    private (DateTime, DateTime, long, long) Stamp()
    {
        var cert = new FileInfo(_certPath);
        var key = new FileInfo(_keyPath);
        return (cert.Exists ? cert.LastWriteTimeUtc : default, key.Exists ? key.LastWriteTimeUtc : default,
            cert.Exists ? cert.Length : -1, key.Exists ? key.Length : -1);
    }

    private sealed record Loaded(X509Certificate2 Certificate, (DateTime, DateTime, long, long) Stamp);
}

internal static partial class TlsLog
{
    [LoggerMessage(EventId = 800, Level = LogLevel.Information, Message = "TLS certificate {Path} reloaded: {Subject}, valid until {NotAfter}")]
    public static partial void Reloaded(ILogger logger, string path, string subject, DateTime notAfter);

    [LoggerMessage(EventId = 801, Level = LogLevel.Warning, Message = "TLS certificate {Path} with key {KeyPath} could not be loaded (the previous one stays in use): {Error}")]
    public static partial void LoadFailed(ILogger logger, string path, string keyPath, string error);

    [LoggerMessage(EventId = 802, Level = LogLevel.Warning, Message = "TLS: serving with a self-signed CA of this daemon, {CaPath}. Trust it: NODE_EXTRA_CA_CERTS={CaPath} for Node (the e2b SDK), SSL_CERT_FILE / REQUESTS_CA_BUNDLE for Python, or system-wide: cp {CaPath} /usr/local/share/ca-certificates/paddock.crt && update-ca-certificates")]
    public static partial void SelfSigned(ILogger logger, string caPath);
}
