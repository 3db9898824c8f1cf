using System.Globalization;
using System.Text;

namespace Paddock.Client.Envd;

/// <summary>
/// How requests reach envd in one sandbox, as E2B's SDK sends them: to one base URL (a single sandbox URL, the
/// sandbox's own host, or localhost in debug mode), always with <c>E2b-Sandbox-Id</c> and <c>E2b-Sandbox-Port</c>
/// so that a proxy can route them, <c>X-Access-Token</c> for secure sandboxes, and the acting user as
/// <c>Authorization: Basic base64(user:)</c>.
/// </summary>
internal sealed class EnvdEndpoint
{
    private readonly string _baseUrl;

    public EnvdEndpoint(Uri baseUrl, string sandboxId, int port, string? accessToken)
    {
        var text = baseUrl.ToString();
        _baseUrl = text.EndsWith('/') ? text : text + "/";
        BaseUrl = new Uri(_baseUrl);
        SandboxId = sandboxId;
        Port = port;
        AccessToken = accessToken;
    }

    public Uri BaseUrl { get; }

    public string SandboxId { get; }

    public int Port { get; }

    public string? AccessToken { get; }

    public Uri Url(string relative) => new(_baseUrl + relative);

    public void Apply(HttpRequestMessage request, string? user)
    {
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Id", SandboxId);
        request.Headers.TryAddWithoutValidation("E2b-Sandbox-Port", Port.ToString(CultureInfo.InvariantCulture));
        if (AccessToken is { Length: > 0 } token)
        {
            request.Headers.TryAddWithoutValidation("X-Access-Token", token);
        }
        if (user is { Length: > 0 })
        {
            request.Headers.TryAddWithoutValidation("Authorization", BasicAuth(user));
        }
    }

    /// <summary>E2B's user selector: HTTP Basic with the user name and an empty password.</summary>
    public static string BasicAuth(string user) => "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes(user + ":"));
}
