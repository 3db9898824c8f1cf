using System.Security.Cryptography;

namespace Paddock.Daemon.Sandboxes;

/// <summary>Sandbox ids and per-sandbox secrets.</summary>
internal static class SandboxIds
{
    // Lower-case letters and digits only: the id becomes a DNS label in {port}-{id}.{domain}.
    private const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

    public const int Length = 20;

    /// <summary>20 characters from 36 (about 103 bits), the shape of E2B's ids.</summary>
    public static string NewId() => RandomNumberGenerator.GetString(Alphabet, Length);

    /// <summary>An access token: 256 random bits as hex.</summary>
    public static string NewToken() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));

    /// <summary>Whether <paramref name="text"/> could be an id (for routing; says nothing of whether it exists).</summary>
    public static bool IsWellFormed(ReadOnlySpan<char> text)
    {
        if (text.Length is 0 or > 64)
        {
            return false;
        }
        foreach (var c in text)
        {
            if (c is not ((>= 'a' and <= 'z') or (>= '0' and <= '9')))
            {
                return false;
            }
        }
        return true;
    }
}
