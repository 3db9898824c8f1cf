using System.Globalization;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Proxy;

/// <summary>Which sandbox port a request is for.</summary>
internal readonly record struct SandboxTarget(string SandboxId, int Port);

/// <summary>
/// Tells sandbox traffic from control-plane requests. Two forms, both the SDK's: the headers <c>E2b-Sandbox-Id</c> and
/// <c>E2b-Sandbox-Port</c> (what it sends when <c>E2B_SANDBOX_URL</c> points every sandbox at one URL), and the host
/// <c>{port}-{sandboxId}.{domain}</c> (what <c>getHost(port)</c> returns).
/// </summary>
internal static class SandboxRouting
{
    public const string SandboxIdHeader = "E2b-Sandbox-Id";
    public const string SandboxPortHeader = "E2b-Sandbox-Port";

    public enum Kind
    {
        /// <summary>Not sandbox traffic: a control-plane request.</summary>
        ControlPlane,

        Sandbox,

        /// <summary>Meant for a sandbox, but malformed (see the message).</summary>
        Invalid,
    }

    public readonly record struct Result(Kind Kind, SandboxTarget Target, string? Error);

    public static Result Route(HttpRequest request, string domainHostName)
    {
        var idHeader = request.Headers[SandboxIdHeader].ToString();
        if (idHeader.Length > 0)
        {
            var portHeader = request.Headers[SandboxPortHeader].ToString();
            if (!TryParsePort(portHeader, out var headerPort))
            {
                return new(Kind.Invalid, default, $"the {SandboxPortHeader} header must be a port number 1-65535, got '{portHeader}'");
            }
            return SandboxIds.IsWellFormed(idHeader)
                ? new(Kind.Sandbox, new SandboxTarget(idHeader, headerPort), null)
                : new(Kind.Invalid, default, $"'{idHeader}' is not a sandbox id");
        }
        return TryParseHost(request.Host.Host, domainHostName, out var target)
            ? new(Kind.Sandbox, target, null)
            : new(Kind.ControlPlane, default, null);
    }

    /// <summary>Parses <c>{port}-{sandboxId}.{domain}</c>; the domain must match, so the API's own host never routes to a sandbox.</summary>
    public static bool TryParseHost(string host, string domainHostName, out SandboxTarget target)
    {
        target = default;
        var dot = host.IndexOf('.', StringComparison.Ordinal);
        if (dot <= 0 || !host.AsSpan(dot + 1).Equals(domainHostName, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var label = host[..dot].ToLowerInvariant();
        var dash = label.IndexOf('-', StringComparison.Ordinal);
        if (dash <= 0 || !TryParsePort(label[..dash], out var port) || !SandboxIds.IsWellFormed(label.AsSpan(dash + 1)))
        {
            return false;
        }
        target = new SandboxTarget(label[(dash + 1)..], port);
        return true;
    }

    private static bool TryParsePort(string text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 1 and <= 65535;
}
