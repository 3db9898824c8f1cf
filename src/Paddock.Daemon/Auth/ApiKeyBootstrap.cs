namespace Paddock.Daemon.Auth;

/// <summary>
/// On the first start (no stored key) makes a key, stores its hash, writes the key to <c>{state}/api-key</c> with mode
/// 0600 and prints it once. The plain key is never stored anywhere else.
/// </summary>
internal static class ApiKeyBootstrap
{
    public const string FileName = "api-key";

    public static async Task<string?> EnsureAsync(Store.IApiKeyStore store, string stateDir, TimeProvider time, ILogger logger, CancellationToken cancellationToken)
    {
        var hashes = await store.ListApiKeyHashesAsync(cancellationToken);
        if (hashes.Count > 0)
        {
            return null;
        }
        var key = ApiKeys.Generate();
        var path = Path.Combine(stateDir, FileName);
        // Written before the hash is stored: if writing fails the next start tries again instead of leaving a key nobody has.
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        await using (var file = new FileStream(path, options))
        await using (var writer = new StreamWriter(file))
        {
            await writer.WriteLineAsync(key.AsMemory(), cancellationToken);
        }
        // UnixCreateMode only applies to a new file; a leftover file keeps its mode unless set here.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
        await store.AddApiKeyAsync(ApiKeys.Hash(key), ApiKeys.Mask(key), time.GetUtcNow(), cancellationToken);
        AuthLog.FirstKeyCreated(logger, ApiKeys.Mask(key), path);
        return key;
    }
}
