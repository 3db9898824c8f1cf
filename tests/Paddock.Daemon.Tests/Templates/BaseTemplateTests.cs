using Paddock.Daemon.Native;
using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>The real <c>base</c> template (debootstrap; built once and cached under the test state directory).</summary>
public sealed class BaseTemplateTests
{
    public BaseTemplateTests() => TestEnvironment.RequireRootAndRunc();

    [Fact]
    public async Task Base_has_the_tools_and_a_user_with_passwordless_sudo_shifted_into_the_range()
    {
        var template = await TestEnvironment.BaseTemplateAsync().WaitAsync(TimeSpan.FromMinutes(20));
        var root = template.RootfsPath;

        Assert.Equal("user", template.DefaultUser);
        foreach (var tool in (string[])["bin/bash", "usr/bin/python3", "usr/bin/node", "usr/bin/git", "usr/bin/curl", "usr/bin/ps", "usr/bin/sudo"])
        {
            Assert.True(File.Exists(Path.Combine(root, tool)), $"{tool} is missing from the base template");
        }
        Assert.Contains("user:x:1000:1000::/home/user:/bin/bash", File.ReadAllLines(Path.Combine(root, "etc", "passwd")));
        Assert.Equal("user ALL=(ALL:ALL) NOPASSWD: ALL\n", File.ReadAllText(Path.Combine(root, "etc", "sudoers.d", "user")));

        // Root inside is 100000 outside, user (1000) is 101000; sudo keeps its set-user-ID bit through the chown.
        AssertOwner(Path.Combine(root, "etc", "passwd"), 100000);
        AssertOwner(Path.Combine(root, "home", "user"), 101000);
        var sudo = Files.Stat(Path.Combine(root, "usr", "bin", "sudo"));
        Assert.Equal(100000u, sudo.Uid);
        Assert.True((sudo.Mode & 0x800) != 0, "sudo lost its set-user-ID bit");
        Assert.Equal(0b100_100_000u, Files.Stat(Path.Combine(root, "etc", "sudoers.d", "user")).Mode & 0xFFF);
    }

    [Fact]
    public async Task A_second_request_reuses_the_build()
    {
        var first = await TestEnvironment.BaseTemplateAsync().WaitAsync(TimeSpan.FromMinutes(20));

        var again = await TestEnvironment.Templates.EnsureAsync(DebootstrapRecipe.Base, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal(first.Version, again.Version);
        Assert.Equal(first.BuiltAt, again.BuiltAt);
        Assert.Equal(TestEnvironment.Templates.VersionOf(DebootstrapRecipe.Base), again.Version);
        Assert.NotEqual(again.Version, TestEnvironment.Templates.VersionOf(DebootstrapRecipe.Base with { Packages = ["bash"] }));
    }

    private static void AssertOwner(string path, uint id)
    {
        var s = Files.Stat(path);
        Assert.True(s.Uid == id && s.Gid == id, $"{path}: expected {id}:{id}, found {s.Uid}:{s.Gid}");
    }
}
