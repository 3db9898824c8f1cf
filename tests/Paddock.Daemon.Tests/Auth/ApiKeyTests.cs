using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Auth;

public sealed partial class ApiKeyTests
{
    [Fact]
    public void Generated_keys_have_the_shape_the_E2B_SDK_accepts_and_differ()
    {
        var a = ApiKeys.Generate();
        var b = ApiKeys.Generate();
        // The pattern newer SDKs check client-side (packages/js-sdk/src/api/index.ts).
        Assert.Matches(SdkKeyPattern(), a);
        Assert.Equal(44, a.Length);
        Assert.NotEqual(a, b);
    }

    [Fact]
    public void The_hash_is_hex_sha256_and_the_mask_hides_the_key()
    {
        Assert.Equal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", ApiKeys.Hash("hello"));
        var key = ApiKeys.Generate();
        var mask = ApiKeys.Mask(key);
        Assert.StartsWith("e2b_", mask, StringComparison.Ordinal);
        Assert.EndsWith(key[^4..], mask, StringComparison.Ordinal);
        Assert.DoesNotContain(key[4..^4], mask, StringComparison.Ordinal);
    }

    [Fact]
    public void The_authenticator_accepts_stored_and_extra_keys_only()
    {
        var stored = ApiKeys.Generate();
        var auth = new ApiKeyAuthenticator();
        auth.Load([ApiKeys.Hash(stored)], "e2b_extra");
        Assert.Null(auth.Check(stored));
        Assert.Null(auth.Check("e2b_extra"));
        Assert.Equal("invalid API key", auth.Check(stored + "x"));
        Assert.Contains("missing", auth.Check(null), StringComparison.Ordinal);
        Assert.Contains("missing", auth.Check(""), StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_first_key_is_made_once_written_0600_and_only_its_hash_stored()
    {
        using var dir = new TempDir();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var store = new SqliteStore(Path.Combine(dir.Path, "paddock.db"), NullLogger<SqliteStore>.Instance);
        await store.InitializeAsync(timeout.Token);

        var key = await ApiKeyBootstrap.EnsureAsync(store, dir.Path, TimeProvider.System, NullLogger.Instance, timeout.Token);
        Assert.NotNull(key);
        var file = Path.Combine(dir.Path, ApiKeyBootstrap.FileName);
        Assert.Equal(key, (await File.ReadAllTextAsync(file, timeout.Token)).Trim());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.Equal([ApiKeys.Hash(key)], await store.ListApiKeyHashesAsync(timeout.Token));

        // The database holds no plain key.
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        foreach (var db in Directory.GetFiles(dir.Path, "paddock.db*"))
        {
            var bytes = await File.ReadAllBytesAsync(db, timeout.Token);
            Assert.DoesNotContain(key, System.Text.Encoding.UTF8.GetString(bytes), StringComparison.Ordinal);
        }

        Assert.Null(await ApiKeyBootstrap.EnsureAsync(store, dir.Path, TimeProvider.System, NullLogger.Instance, timeout.Token));
        Assert.Equal(key, (await File.ReadAllTextAsync(file, timeout.Token)).Trim());
    }

    [GeneratedRegex("^e2b_[0-9a-f]+$")]
    private static partial Regex SdkKeyPattern();
}
