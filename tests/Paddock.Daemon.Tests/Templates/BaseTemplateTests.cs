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

    [Fact]
    public async Task A_login_shell_of_base_learns_its_uid_from_bash_not_from_a_forked_id_and_gets_the_same_path()
    {
        var template = await TestEnvironment.BaseTemplateAsync().WaitAsync(TimeSpan.FromMinutes(20));
        var text = File.ReadAllText(Path.Combine(template.RootfsPath, "etc", "profile"));
        Assert.DoesNotContain("\"$(id -u)\"", text);
        // Without its profile.d loop, which would read the host's scripts; a copy that an unprivileged uid can read.
        var loop = text.IndexOf("if [ -d /etc/profile.d ]", StringComparison.Ordinal);
        Assert.True(loop > 0, "the template's /etc/profile has no profile.d loop: Debian's file changed, check what this test reads");
        var profile = Path.Combine(Path.GetTempPath(), $"paddock-profile-{Guid.NewGuid():N}");
        File.WriteAllText(profile, text[..loop]);
        File.SetUnixFileMode(profile, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        try
        {
            // The template's own file, sourced by the host's bash and dash as root and as an unprivileged uid, traced:
            // bash never runs id, dash (no $EUID) still does, and both choose the PATH Debian's file chooses for each.
            const string RootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
            const string UserPath = "/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games";
            foreach (var (shell, runsId) in (IEnumerable<(string, bool)>)[("/bin/bash", false), ("/bin/dash", true)])
            {
                foreach (var (asUser, expected) in (IEnumerable<(string[], string)>)[([], RootPath), (["--reuid=1000", "--regid=1000", "--clear-groups"], UserPath)])
                {
                    var result = await ExternalCommand.RunAsync("setpriv", [.. asUser, shell, "-x", "-c", $". {profile}; echo \"PATH=$PATH\""],
                        TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
                    Assert.True(result.Succeeded, result.Describe());
                    Assert.Contains("PATH=" + expected + "\n", result.StandardOutput);
                    Assert.Equal(runsId, result.StandardError.Contains("+ id -u", StringComparison.Ordinal));
                }
            }
        }
        finally
        {
            File.Delete(profile);
        }
    }

    private static void AssertOwner(string path, uint id)
    {
        var s = Files.Stat(path);
        Assert.True(s.Uid == id && s.Gid == id, $"{path}: expected {id}:{id}, found {s.Uid}:{s.Gid}");
    }
}
