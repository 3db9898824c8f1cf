using System.Security.Cryptography;
using System.Text;

namespace Paddock.Interpreter.Jupyter;

/// <summary>
/// HMAC-SHA256 signatures of Jupyter messages (messaging spec, "The Wire Protocol"): the lowercase hex digest of the
/// header, parent header, metadata and content frames, in that order, keyed with the connection file's key.
/// </summary>
internal sealed class MessageSigner
{
    private readonly byte[] _key;

    public MessageSigner(byte[] key) => _key = key;

    /// <summary>The key as the connection file holds it (ASCII hex of random bytes, used as its UTF-8 bytes).</summary>
    public string KeyText => Encoding.UTF8.GetString(_key);

    public static MessageSigner NewRandom() => new(Encoding.ASCII.GetBytes(Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32))));

    /// <summary>The signature frame of the four parts, as 64 ASCII hex digits.</summary>
    public byte[] Sign(ReadOnlySpan<byte> header, ReadOnlySpan<byte> parentHeader, ReadOnlySpan<byte> metadata, ReadOnlySpan<byte> content)
    {
        using var hmac = IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, _key);
        hmac.AppendData(header);
        hmac.AppendData(parentHeader);
        hmac.AppendData(metadata);
        hmac.AppendData(content);
        Span<byte> digest = stackalloc byte[32];
        hmac.GetHashAndReset(digest);
        return Encoding.ASCII.GetBytes(Convert.ToHexStringLower(digest));
    }

    /// <summary>Whether <paramref name="signature"/> is the signature of the parts (compared in constant time).</summary>
    public bool Verify(ReadOnlySpan<byte> signature, ReadOnlySpan<byte> header, ReadOnlySpan<byte> parentHeader, ReadOnlySpan<byte> metadata, ReadOnlySpan<byte> content)
    {
        var expected = Sign(header, parentHeader, metadata, content);
        // A kernel sends lowercase hex (jupyter_client's Session.sign: hexdigest); anything else is a bad signature.
        return CryptographicOperations.FixedTimeEquals(expected, signature);
    }
}
