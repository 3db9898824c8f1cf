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
    public void The_authenticator_accepts_unrevoked_stored_and_extra_keys_only_and_names_their_team()
    {
        var stored = ApiKeys.Generate();
        var revoked = ApiKeys.Generate();
        var other = ApiKeys.Generate();
        var teams = new[]
        {
            new TeamRecord { TeamId = "default", Name = "default", IsAdmin = true, Limits = TeamLimits.None, CreatedAt = DateTimeOffset.UnixEpoch },
            new TeamRecord { TeamId = "t2", Name = "t2", IsAdmin = false, Limits = TeamLimits.None, CreatedAt = DateTimeOffset.UnixEpoch },
        };
        ApiKeyRecord Key(string key, string team, DateTimeOffset? revokedAt = null) => new()
        {
            KeyId = Guid.NewGuid().ToString(), KeyHash = ApiKeys.Hash(key), KeyMask = ApiKeys.Mask(key), TeamId = team, Name = "k",
            CreatedAt = DateTimeOffset.UnixEpoch, RevokedAt = revokedAt,
        };
        var auth = new ApiKeyAuthenticator();
        auth.Load([Key(stored, "default"), Key(revoked, "default", DateTimeOffset.UnixEpoch), Key(other, "t2")], teams, "e2b_extra");

        Assert.Null(auth.Authenticate(stored, out var caller));
        Assert.Equal("default", caller!.TeamId);
        Assert.True(caller.IsAdmin);
        Assert.NotNull(caller.KeyId);
        Assert.Null(auth.Authenticate("e2b_extra", out caller));
        Assert.Equal("default", caller!.TeamId);
        Assert.Null(caller.KeyId);
        Assert.Null(auth.Authenticate(other, out caller));
        Assert.Equal("t2", caller!.TeamId);
        Assert.False(caller.IsAdmin);

        Assert.Equal("invalid API key", auth.Authenticate(revoked, out caller));
        Assert.Null(caller);
        Assert.Equal("invalid API key", auth.Authenticate(stored + "x", out _));
        Assert.Contains("missing", auth.Authenticate(null, out _), StringComparison.Ordinal);
        Assert.Contains("missing", auth.Authenticate("", out _), StringComparison.Ordinal);

        // A reload without the key takes it away.
        auth.Load([Key(other, "t2")], teams, null);
        Assert.Equal("invalid API key", auth.Authenticate(stored, out _));
        Assert.Equal("invalid API key", auth.Authenticate("e2b_extra", out _));
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
