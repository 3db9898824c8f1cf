using System.Security.Cryptography.X509Certificates;
using Paddock.Daemon.Tls;

namespace Paddock.Daemon.Tests.Tls;

public sealed class TlsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("paddock-tls-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Self_signed_makes_a_CA_and_a_wildcard_certificate_it_signed_and_keeps_the_CA()
    {
        var now = DateTimeOffset.UtcNow;
        var (caPath, certPath, keyPath) = SelfSignedCertificates.Ensure(_dir, "paddock.localhost", now);

        using var ca = X509CertificateLoader.LoadCertificateFromFile(caPath);
        using var server = X509Certificate2.CreateFromPemFile(certPath, keyPath);
        Assert.True(server.HasPrivateKey);
        Assert.Equal(ca.Subject, server.Issuer);
        Assert.True(server.MatchesHostname("49983-abcdefghij0123456789.paddock.localhost"));
        Assert.True(server.MatchesHostname("paddock.localhost"));
        Assert.False(server.MatchesHostname("49983-x.example.com"));
        using (var chain = new X509Chain())
        {
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            Assert.True(chain.Build(server), string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation)));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(keyPath));

        // A second start keeps both (clients told to trust the CA go on trusting it); a new domain gets a new
        // server certificate from the same CA.
        var serverBytes = File.ReadAllBytes(certPath);
        SelfSignedCertificates.Ensure(_dir, "paddock.localhost", now.AddDays(1));
        Assert.Equal(serverBytes, File.ReadAllBytes(certPath));
        SelfSignedCertificates.Ensure(_dir, "sandboxes.example.test", now.AddDays(1));
        using var renamed = X509Certificate2.CreateFromPemFile(certPath, keyPath);
        using var sameCa = X509CertificateLoader.LoadCertificateFromFile(caPath);
        Assert.Equal(ca.Thumbprint, sameCa.Thumbprint);
        Assert.True(renamed.MatchesHostname("8000-x.sandboxes.example.test"));
    }

    [Fact]
    public void The_served_certificate_is_reloaded_when_its_files_change_and_a_broken_pair_keeps_the_old_one()
    {
        var first = Directory.CreateDirectory(Path.Combine(_dir, "a")).FullName;
        var second = Directory.CreateDirectory(Path.Combine(_dir, "b")).FullName;
        var (_, certA, keyA) = SelfSignedCertificates.Ensure(first, "one.test", DateTimeOffset.UtcNow);
        var (_, certB, keyB) = SelfSignedCertificates.Ensure(second, "two.test", DateTimeOffset.UtcNow);
        var certPath = Path.Combine(_dir, "live.pem");
        var keyPath = Path.Combine(_dir, "live.key");
        File.Copy(certA, certPath);
        File.Copy(keyA, keyPath);
        var time = new ManualTime();
        var served = new ServerCertificate(certPath, keyPath, time);
        Assert.True(served.Current.MatchesHostname("x.one.test"));

        // A renewal: both files replaced. Seen at the first handshake after the once-a-second check.
        File.Copy(certB, certPath, overwrite: true);
        File.Copy(keyB, keyPath, overwrite: true);
        File.SetLastWriteTimeUtc(certPath, DateTime.UtcNow.AddSeconds(5));
        Assert.True(served.Current.MatchesHostname("x.one.test")); // not looked at again within the second
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(served.Current.MatchesHostname("x.two.test"));

        // Half a renewal (the certificate of one pair, the key of another) does not load: the last good one stays.
        File.Copy(certA, certPath, overwrite: true);
        File.SetLastWriteTimeUtc(certPath, DateTime.UtcNow.AddSeconds(10));
        time.Advance(TimeSpan.FromSeconds(2));
        Assert.True(served.Current.MatchesHostname("x.two.test"));
    }

    [Fact]
    public void Tls_options_go_together_and_https_needs_one()
    {
        Assert.False(DaemonOptions.Parse([], _ => null).Tls);
        var selfSigned = DaemonOptions.Parse(["--tls-self-signed", "--listen", "https://127.0.0.1:0"], _ => null);
        Assert.True(selfSigned.TlsSelfSigned);
        Assert.True(selfSigned.Tls);
        Assert.True(DaemonOptions.Parse([], n => n == "PADDOCK_TLS_SELF_SIGNED" ? "true" : null).TlsSelfSigned);
        var cert = Path.Combine(_dir, "c.pem");
        File.WriteAllText(cert, "x");
        Assert.Contains("go together", Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--tls-cert", cert], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("alternatives", Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--tls-cert", cert, "--tls-key", cert, "--tls-self-signed"], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("is https", Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--listen", "https://127.0.0.1:0"], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("no file", Assert.Throws<ArgumentException>(() => DaemonOptions.Parse(["--tls-cert", "/nonexistent.pem"], _ => null)).Message, StringComparison.Ordinal);
    }

    private sealed class ManualTime : TimeProvider
    {
        private long _ticks = 1;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
