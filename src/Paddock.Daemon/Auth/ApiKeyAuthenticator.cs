using System.Security.Cryptography;
using System.Text;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Checks the <c>X-API-Key</c> header of control-plane requests against the stored key hashes and
/// <c>PADDOCK_API_KEY</c>. The hashes are loaded once at start: keys are only ever added at start.
/// </summary>
internal sealed class ApiKeyAuthenticator
{
    public const string HeaderName = "X-API-Key";

    private readonly List<byte[]> _hashes = [];

    public void Load(IEnumerable<string> storedHashes, string? extraKey)
    {
        _hashes.Clear();
        foreach (var hash in storedHashes)
        {
            _hashes.Add(Encoding.ASCII.GetBytes(hash));
        }
        if (extraKey is { Length: > 0 })
        {
            _hashes.Add(Encoding.ASCII.GetBytes(ApiKeys.Hash(extraKey)));
        }
    }

    /// <summary>Null when the key is valid, else why not (for the 401's message).</summary>
    public string? Check(string? presented)
    {
        if (string.IsNullOrEmpty(presented))
        {
            return "missing API key: send it in the X-API-Key header";
        }
        var hash = Encoding.ASCII.GetBytes(ApiKeys.Hash(presented));
        var match = false;
        // Compare against every key in fixed time so neither which key nor how much of it matched shows in the timing.
        foreach (var known in _hashes)
        {
            match |= CryptographicOperations.FixedTimeEquals(hash, known);
        }
        return match ? null : "invalid API key";
    }
}
