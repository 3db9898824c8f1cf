using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>The uid/gid shift of template files into the sandboxes' range (needs root, for chown).</summary>
public sealed class OwnershipShiftTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-shift-");
    private readonly string _rootfs;
    private readonly string _outside;

    public OwnershipShiftTests()
    {
        Runtimes.TestEnvironment.RequireRootAndRunc();
        _rootfs = Directory.CreateDirectory(Path.Combine(_dir.FullName, "rootfs")).FullName;
        _outside = Path.Combine(_dir.FullName, "outside");
        File.WriteAllText(_outside, "host file");
    }

    [Fact]
    public async Task Owners_move_into_the_range_and_modes_links_and_capabilities_survive()
    {
        var etc = Directory.CreateDirectory(Path.Combine(_rootfs, "etc")).FullName;
        var home = Directory.CreateDirectory(Path.Combine(_rootfs, "home", "user")).FullName;
        Files.ChangeOwner(home, 1000, 1000);
        var setuid = Path.Combine(_rootfs, "sudo");
        File.WriteAllText(setuid, "#!/bin/sh\n");
        Files.ChangeMode(setuid, 0b100_111_101_101); // 4755
        var ping = Path.Combine(_rootfs, "ping");
        File.WriteAllText(ping, "binary");
        // vfs_cap_data revision 2, effective flag, CAP_NET_RAW (13) permitted: what `setcap cap_net_raw+ep` writes.
        byte[] capability = [0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        Files.SetAttribute(ping, "security.capability", capability);
        var passwd = Path.Combine(etc, "passwd");
        File.WriteAllText(passwd, "root:x:0:0::/root:/bin/sh\n");
        var ln = await ExternalCommand.RunAsync("ln", [passwd, Path.Combine(etc, "passwd.link")], Runtimes.TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(ln.Succeeded, ln.Describe());
        File.CreateSymbolicLink(Path.Combine(_rootfs, "escape"), _outside);
        var alreadyShifted = Path.Combine(_rootfs, "shifted");
        File.WriteAllText(alreadyShifted, "");
        Files.ChangeOwner(alreadyShifted, 100005, 100005);

        var changed = OwnershipShift.Shift(_rootfs, IdMapping.Default);

        Assert.Equal(8, changed); // rootfs, etc, home, user, sudo, ping, passwd (once for both links), escape (the link itself)
        AssertOwner(_rootfs, 100000, 100000);
        AssertOwner(home, 101000, 101000);
        AssertOwner(passwd, 100000, 100000);
        AssertOwner(alreadyShifted, 100005, 100005);
        Assert.Equal(0b100_111_101_101u, Files.Stat(setuid).Mode & 0xFFF);
        Assert.Equal(capability, Files.GetAttribute(ping, "security.capability"));
        AssertOwner(Path.Combine(_rootfs, "escape"), 100000, 100000);
        // The link was changed, never what it points at.
        AssertOwner(_outside, 0, 0);

        Assert.Equal(0, OwnershipShift.Shift(_rootfs, IdMapping.Default));
    }

    [Fact]
    public void A_file_with_an_acl_is_refused_rather_than_shifted_wrongly()
    {
        var file = Path.Combine(_rootfs, "acl");
        File.WriteAllText(file, "");
        // posix_acl_xattr version 2: user::rw-, user:1000:r--, group::r--, mask::r--, other::r--. A named user is
        // needed: an ACL of only the three base entries is the file mode, and the kernel stores no attribute for it.
        byte[] acl =
        [
            0x02, 0x00, 0x00, 0x00,
            0x01, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff, 0xff,
            0x02, 0x00, 0x04, 0x00, 0xe8, 0x03, 0x00, 0x00,
            0x04, 0x00, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff,
            0x10, 0x00, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff,
            0x20, 0x00, 0x04, 0x00, 0xff, 0xff, 0xff, 0xff,
        ];
        Files.SetAttribute(file, "system.posix_acl_access", acl);

        Assert.Throws<NotSupportedException>(() => OwnershipShift.Shift(_rootfs, IdMapping.Default));
    }

    private static void AssertOwner(string path, uint uid, uint gid)
    {
        var s = Files.Stat(path);
        Assert.True(s.Uid == uid && s.Gid == gid, $"{path}: expected {uid}:{gid}, found {s.Uid}:{s.Gid}");
    }

    public void Dispose() => _dir.Delete(recursive: true);
}
