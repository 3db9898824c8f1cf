using System.Collections.Frozen;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Auth;

/// <summary>
/// Checks the <c>X-API-Key</c> header of control-plane requests against the unrevoked stored keys and
/// <c>PADDOCK_API_KEY</c>, and says which team the key acts for. It holds a snapshot of the keys that
/// <see cref="Teams.TeamDirectory"/> replaces after every change to keys or teams, so a key revoked through the API is
/// refused from the next request on.
/// </summary>
internal sealed class ApiKeyAuthenticator
{
    public const string HeaderName = "X-API-Key";

    private sealed record KeyEntry(byte[] Hash, string? KeyId, string TeamId, bool IsAdmin, string Mask);

    // Replaced as a whole, never changed in place: a request sees one consistent snapshot.
    private volatile FrozenDictionary<string, KeyEntry> _keys = FrozenDictionary<string, KeyEntry>.Empty;

    /// <summary>
    /// Replaces the known keys: the unrevoked <paramref name="keys"/> of existing teams, and <paramref name="extraKey"/>
    /// (<c>PADDOCK_API_KEY</c>) for the default team.
    /// </summary>
    public void Load(IEnumerable<ApiKeyRecord> keys, IEnumerable<TeamRecord> teams, string? extraKey)
    {
        var admin = teams.ToDictionary(t => t.TeamId, t => t.IsAdmin, StringComparer.Ordinal);
        var entries = new Dictionary<string, KeyEntry>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (key.RevokedAt is null && admin.TryGetValue(key.TeamId, out var isAdmin))
            {
                entries[key.KeyHash] = new KeyEntry(Encoding.ASCII.GetBytes(key.KeyHash), key.KeyId, key.TeamId, isAdmin, key.KeyMask);
            }
        }
        if (extraKey is { Length: > 0 })
        {
            var hash = ApiKeys.Hash(extraKey);
            entries[hash] = new KeyEntry(Encoding.ASCII.GetBytes(hash), null, SandboxRecord.DefaultTeamId,
                admin.GetValueOrDefault(SandboxRecord.DefaultTeamId, true), ApiKeys.Mask(extraKey));
        }
        _keys = entries.ToFrozenDictionary(StringComparer.Ordinal);
    }

    /// <summary>Null when the key is valid (and <paramref name="caller"/> says for whom), else why not (for the 401's message).</summary>
    public string? Authenticate(string? presented, out Caller? caller)
    {
        caller = null;
        if (string.IsNullOrEmpty(presented))
        {
            return "missing API key: send it in the X-API-Key header";
        }
        var hashText = ApiKeys.Hash(presented);
        // A lookup by hash is safe: what varies with the lookup's timing is the SHA-256 of a 160-bit random key, which
        // says nothing about the key. The final compare still runs in fixed time.
        if (!_keys.TryGetValue(hashText, out var entry)
            || !CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(hashText), entry.Hash))
        {
            return "invalid API key";
        }
        caller = new Caller(entry.TeamId, entry.Mask) { KeyId = entry.KeyId, IsAdmin = entry.IsAdmin };
        return null;
    }
}
