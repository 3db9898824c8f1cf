using System.Security.Cryptography;
using System.Text;

namespace Paddock.Daemon.Auth;

/// <summary>
/// API keys look like E2B's: <c>e2b_</c> and 40 lower-case hex digits. The prefix is E2B's on purpose: newer E2B SDKs
/// check keys against <c>^e2b_[0-9a-f]+$</c> on the client side (packages/js-sdk/src/api/index.ts, API_KEY_PATTERN)
/// and would refuse any other shape before sending a request.
/// </summary>
internal static class ApiKeys
{
    public const string Prefix = "e2b_";

    /// <summary>A new key: 160 random bits.</summary>
    public static string Generate() => Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));

    /// <summary>What is stored: the SHA-256 of the key's UTF-8 bytes, as lower-case hex.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <summary>A form safe to show and log: the prefix and the last four characters.</summary>
    public static string Mask(string key) => key.Length <= Prefix.Length + 4 ? "****" : key[..Prefix.Length] + "…" + key[^4..];
}
