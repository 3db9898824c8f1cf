namespace Paddock.Daemon.Tls;

/// <summary>
/// TLS for the one listener (issue 18): the certificate from <c>--tls-cert</c>/<c>--tls-key</c>, or, with
/// <c>--tls-self-signed</c>, the daemon's own CA and a wildcard certificate for its domain.
/// </summary>
internal static class TlsSetup
{
    /// <summary>
    /// The domain a self-signed daemon names its sandboxes under when none is configured. Not <c>localhost</c>: a
    /// wildcard certificate for <c>*.localhost</c> is one for a top-level name, which Node's TLS (tls.checkServerIdentity:
    /// "*.tld wildcards are not allowed") refuses; <c>*.paddock.localhost</c> has three labels and still resolves to
    /// loopback wherever <c>*.localhost</c> does (RFC 6761; systemd's nss-myhostname).
    /// </summary>
    public const string SelfSignedHostName = "paddock.localhost";

    public static ServerCertificate Certificate(DaemonOptions options)
    {
        // The host's loggers do not exist yet: the start-up line goes to a console logger of its own; the reloads are
        // logged through the host's, once it is built (ServerCertificate.Logger).
        using var factory = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true));
        var logger = factory.CreateLogger("Paddock.Daemon.Tls");
        if (options.TlsSelfSigned)
        {
            var host = HostName(options.Domain) ?? SelfSignedHostName;
            var (ca, cert, key) = SelfSignedCertificates.Ensure(options.StateDir, host, DateTimeOffset.UtcNow);
            TlsLog.SelfSigned(logger, ca);
            return new ServerCertificate(cert, key, TimeProvider.System);
        }
        return new ServerCertificate(options.TlsCertPath!, options.TlsKeyPath!, TimeProvider.System);
    }

    private static string? HostName(string? domain)
    {
        if (domain is null)
        {
            return null;
        }
        var colon = domain.LastIndexOf(':');
        return colon > 0 && domain.IndexOf(']', StringComparison.Ordinal) < colon ? domain[..colon] : domain;
    }
}
