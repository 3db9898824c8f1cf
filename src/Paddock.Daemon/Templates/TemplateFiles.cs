using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace Paddock.Daemon.Templates;

/// <summary>An upload the store refuses: the API's 400 or 413.</summary>
internal sealed class TemplateFileException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
}

/// <summary>
/// The archives of COPY sources a build's client uploads (a tar, usually gzipped, made by the SDK), by team and by
/// the SDK's hash of the files, so that an unchanged source is uploaded once. Teams do not share uploads: a hash is
/// the client's claim, not something the daemon checks against the archive.
/// </summary>
internal sealed partial class TemplateFiles(DaemonOptions options)
{
    /// <summary>The largest archive one COPY may upload.</summary>
    public const long MaxBytes = 1L << 30;

    [GeneratedRegex("^[0-9a-f]{16,128}$")]
    private static partial Regex ValidHash();

    public string Directory { get; } = Path.Combine(options.StateDir, "template-files");

    public static bool IsValidHash(string hash) => ValidHash().IsMatch(hash);

    public string PathOf(string teamId, string hash)
    {
        if (!IsValidHash(hash))
        {
            throw new TemplateFileException(StatusCodes.Status400BadRequest, $"invalid files hash '{hash}': expected lower-case hex");
        }
        var team = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(teamId)))[..16];
        return Path.Combine(Directory, team, hash);
    }

    public bool Exists(string teamId, string hash) => File.Exists(PathOf(teamId, hash));

    /// <summary>Stores the upload; it appears under its name only once complete.</summary>
    public async Task ReceiveAsync(string teamId, string hash, Stream body, long? declaredLength, CancellationToken cancellationToken)
    {
        if (declaredLength > MaxBytes)
        {
            throw new TemplateFileException(StatusCodes.Status413PayloadTooLarge, $"the upload of {declaredLength} bytes is larger than the limit of {MaxBytes} bytes");
        }
        var target = PathOf(teamId, hash);
        System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var staging = target + ".part-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            await using (var file = new FileStream(staging, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                long total = 0;
                int read;
                while ((read = await body.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    total += read;
                    if (total > MaxBytes)
                    {
                        throw new TemplateFileException(StatusCodes.Status413PayloadTooLarge, $"the upload is larger than the limit of {MaxBytes} bytes");
                    }
                    await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
            }
            File.Move(staging, target, overwrite: true);
        }
        finally
        {
            File.Delete(staging);
        }
    }
}
