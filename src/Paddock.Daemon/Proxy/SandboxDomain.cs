namespace Paddock.Daemon.Proxy;

/// <summary>
/// The domain sandbox hosts live under, <c>{port}-{sandboxId}.{domain}</c>: what the create response's <c>domain</c>
/// says, so that the SDK's <c>getHost(port)</c> names a host this listener routes. Unless configured it is
/// <c>localhost:{port}</c> (<c>paddock.localhost:{port}</c> with a self-signed certificate), known only once the listener is bound (tests listen on port 0).
/// </summary>
internal sealed class SandboxDomain
{
    private readonly string _defaultHost;
    private volatile string? _value;

    public SandboxDomain(DaemonOptions options)
    {
        _value = options.Domain;
        // A self-signed daemon's wildcard certificate cannot be for *.localhost (see Tls/TlsSetup.cs).
        _defaultHost = options.TlsSelfSigned ? Tls.TlsSetup.SelfSignedHostName : "localhost";
    }

    public string Value => _value ?? throw new InvalidOperationException("the sandbox domain is not known before the listener is bound");

    /// <summary>The domain without a port: what a Host header's name must end with.</summary>
    public string HostName
    {
        get
        {
            var value = Value;
            var colon = value.LastIndexOf(':');
            return colon > 0 && value.IndexOf(']', StringComparison.Ordinal) < colon ? value[..colon] : value;
        }
    }

    /// <summary>Sets the default from the bound port, unless a domain was configured.</summary>
    public void SetDefaultFromPort(int port) => _value ??= $"{_defaultHost}:{port}";
}
