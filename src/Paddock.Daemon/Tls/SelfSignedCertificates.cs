using System.Formats.Asn1;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Paddock.Daemon.Tls;

/// <summary>
/// <c>--tls-self-signed</c>: a CA of this daemon's own and a wildcard certificate for its domain, both kept in
/// <c>{state}/tls/</c> and made with <see cref="CertificateRequest"/> (no openssl process). The CA is made once and
/// kept, so that a client told to trust it (<c>NODE_EXTRA_CA_CERTS</c>, the system store) keeps trusting the daemon
/// across restarts; the server certificate is made again when its names change or it nears its end.
/// </summary>
internal static class SelfSignedCertificates
{
    public const string CaFile = "ca.pem";
    private const string CaKeyFile = "ca.key";
    public const string CertFile = "server.pem";
    public const string KeyFile = "server.key";

    /// <summary>397 days: the longest lifetime browsers accept for a server certificate (CA/Browser Forum).</summary>
    private static readonly TimeSpan ServerLifetime = TimeSpan.FromDays(397);

    /// <summary>Made again when this little is left, at a start.</summary>
    private static readonly TimeSpan RenewBefore = TimeSpan.FromDays(30);

    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// Makes (or keeps) the CA and the server certificate for <paramref name="hostName"/> (the domain without a port):
    /// names <c>*.{host}</c>, <c>{host}</c>, <c>localhost</c>, 127.0.0.1 and ::1. Returns the directory's paths.
    /// </summary>
    public static (string CaPath, string CertPath, string KeyPath) Ensure(string stateDir, string hostName, DateTimeOffset now)
    {
        var dir = Path.Combine(stateDir, "tls");
        Directory.CreateDirectory(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var caPath = Path.Combine(dir, CaFile);
        var caKeyPath = Path.Combine(dir, CaKeyFile);
        var certPath = Path.Combine(dir, CertFile);
        var keyPath = Path.Combine(dir, KeyFile);

        X509Certificate2 ca;
        if (File.Exists(caPath) && File.Exists(caKeyPath))
        {
            ca = X509Certificate2.CreateFromPemFile(caPath, caKeyPath);
        }
        else
        {
            ca = MakeCa(now);
            using var caKey = ca.GetECDsaPrivateKey()!;
            WriteFile(caKeyPath, caKey.ExportPkcs8PrivateKeyPem() + "\n", Private);
            WriteFile(caPath, ca.ExportCertificatePem() + "\n", Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }
        using (ca)
        {
            string[] names = [$"*.{hostName}", hostName, "localhost"];
            if (!CurrentServerFits(certPath, keyPath, ca, names, now))
            {
                using var server = MakeServer(ca, names, now);
                using var key = server.GetECDsaPrivateKey()!;
                WriteFile(keyPath, key.ExportPkcs8PrivateKeyPem() + "\n", Private);
                WriteFile(certPath, server.ExportCertificatePem() + "\n" + ca.ExportCertificatePem() + "\n", Private | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }
        }
        return (caPath, certPath, keyPath);
    }

    private static X509Certificate2 MakeCa(DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN=Paddock local CA ({Environment.MachineName}), O=Paddock", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(10));
    }

    private static X509Certificate2 MakeServer(X509Certificate2 ca, string[] names, DateTimeOffset now)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={names[1]}", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in names)
        {
            san.AddDnsName(name);
        }
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f; // a positive INTEGER
        using var signed = request.Create(ca, now.AddMinutes(-5), now.Add(ServerLifetime), serial);
        return signed.CopyWithPrivateKey(key);
    }

    /// <summary>Whether the kept server certificate was issued by this CA, names exactly these names and has time left.</summary>
    private static bool CurrentServerFits(string certPath, string keyPath, X509Certificate2 ca, string[] names, DateTimeOffset now)
    {
        if (!File.Exists(certPath) || !File.Exists(keyPath))
        {
            return false;
        }
        try
        {
            using var current = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            if (current.Issuer != ca.Subject || current.NotAfter.ToUniversalTime() - now.UtcDateTime < RenewBefore)
            {
                return false;
            }
            var ext = current.Extensions.OfType<X509SubjectAlternativeNameExtension>().FirstOrDefault();
            return ext is not null && ext.EnumerateDnsNames().Order(StringComparer.Ordinal).SequenceEqual(names.Order(StringComparer.Ordinal));
        }
        catch (Exception ex) when (ex is CryptographicException or AsnContentException or IOException)
        {
            return false; // unreadable: made again
        }
    }

    private static void WriteFile(string path, string text, UnixFileMode mode)
    {
        // Written beside and renamed over: a reader (the reloader, a client copying the CA) never sees half a file.
        var temp = path + ".tmp";
        File.WriteAllText(temp, text);
        File.SetUnixFileMode(temp, mode);
        File.Move(temp, path, overwrite: true);
    }
}
