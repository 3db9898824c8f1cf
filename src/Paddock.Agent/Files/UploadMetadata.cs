using System.Text;
using Paddock.Agent.Filesystem;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Files;

/// <summary>
/// The <c>X-Metadata-&lt;key&gt;: &lt;value&gt;</c> headers of an upload, checked by the rules of envd.yaml
/// (POST /files): the key is the header name after the prefix, lowercased; keys and values are printable US-ASCII
/// (0x20-0x7E); a key is at most 246 bytes (XATTR_NAME_MAX 255 less "user.e2b."); all metadata of a file, counting
/// the prefix once per key, is at most 4096 bytes; a repeated header counts with its first value.
/// </summary>
internal static class UploadMetadata
{
    public const string HeaderPrefix = "X-Metadata-";
    public const int MaxKeyBytes = 255 - 9;
    public const int MaxTotalBytes = 4096;

    /// <summary>The metadata, ordered by key; throws ConnectException (invalid_argument) naming the bad header.</summary>
    public static SortedDictionary<string, string> Parse(IHeaderDictionary headers)
    {
        var metadata = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var total = 0;
        foreach (var (name, values) in headers)
        {
            if (!name.StartsWith(HeaderPrefix, StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            var key = name[HeaderPrefix.Length..].ToLowerInvariant();
            var value = values.Count > 0 ? values[0] ?? "" : "";
            if (key.Length == 0)
            {
                throw Invalid($"metadata header '{name}' names no key");
            }
            if (!IsPrintableAscii(key))
            {
                throw Invalid($"metadata key '{PathResolver.Printable(key)}' must be printable US-ASCII");
            }
            if (key.Length > MaxKeyBytes)
            {
                throw Invalid($"metadata key '{key[..32]}...' is {key.Length} bytes; at most {MaxKeyBytes} are allowed");
            }
            if (!IsPrintableAscii(value))
            {
                throw Invalid($"metadata value of key '{key}' must be printable US-ASCII");
            }
            if (metadata.ContainsKey(key))
            {
                continue; // the same key in another letter case: the first one counts
            }
            metadata[key] = value;
            total += EntryInfos.MetadataPrefix.Length + key.Length + value.Length;
            if (total > MaxTotalBytes)
            {
                throw Invalid($"metadata is larger than {MaxTotalBytes} bytes (keys, values and a '{EntryInfos.MetadataPrefix}' prefix per key)");
            }
        }
        return metadata;
    }

    public static byte[] Encode(string value) => Encoding.ASCII.GetBytes(value);

    private static bool IsPrintableAscii(string text)
    {
        foreach (var c in text)
        {
            if (c < 0x20 || c > 0x7E)
            {
                return false;
            }
        }
        return true;
    }

    private static ConnectException Invalid(string message) => new(ConnectCode.InvalidArgument, message);
}
