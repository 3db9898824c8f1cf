namespace Paddock.Daemon.Templates.Images;

/// <summary>
/// An image this host will not import, with the API status that says why: 400 (malformed, a digest that does not
/// match, an entry that escapes the root, an unsupported media type), 413 (over the size limit), 502 (the registry
/// failed). The message names the part of the image at fault.
/// </summary>
internal sealed class ImageImportException(int statusCode, string message, Exception? inner = null) : Exception(message, inner)
{
    public int StatusCode { get; } = statusCode;

    public static ImageImportException Invalid(string message, Exception? inner = null) => new(StatusCodes.Status400BadRequest, message, inner);
}

/// <summary>
/// What one import may unpack: bytes of file contents and entries over all its layers, so that a small archive that
/// expands without end (a gzip bomb, millions of empty files) is stopped with a 413 instead of filling the disk.
/// </summary>
internal sealed class ImportBudget(long maxBytes, int maxEntries = ImportBudget.DefaultMaxEntries)
{
    public const int DefaultMaxEntries = 2_000_000;

    public long MaxBytes { get; } = maxBytes;

    public int MaxEntries { get; } = maxEntries;

    public long UsedBytes { get; private set; }

    public int UsedEntries { get; private set; }

    /// <summary>The most decompressed bytes one layer may have: its files plus 1 KiB of headers per entry.</summary>
    public long MaxStreamBytes => MaxBytes + (long)MaxEntries * 1024;

    public void Add(long bytes, string what)
    {
        UsedEntries++;
        UsedBytes += bytes;
        if (UsedBytes > MaxBytes)
        {
            throw new ImageImportException(StatusCodes.Status413PayloadTooLarge,
                $"the image is larger than this host's limit of {MaxBytes} bytes unpacked (at {what}); raise --max-image-mb to import it");
        }
        if (UsedEntries > MaxEntries)
        {
            throw new ImageImportException(StatusCodes.Status413PayloadTooLarge, $"the image has more than {MaxEntries} files (at {what})");
        }
    }
}
