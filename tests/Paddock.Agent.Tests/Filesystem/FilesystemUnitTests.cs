using Paddock.Agent.Filesystem;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>Unit tests of the pieces whose rules come from envd and Go: path expansion, mode text, fs types.</summary>
public sealed class FilesystemUnitTests
{
    private static readonly AgentUser User = new("user", 1000, 1000, "/home/user", "/bin/sh", []);

    [Theory]
    [InlineData("file.txt", "/home/user/file.txt")]
    [InlineData("~", "/home/user")]
    [InlineData("~/a/b", "/home/user/a/b")]
    [InlineData("/abs//x/./y/", "/abs/x/y")]
    [InlineData("a/../../../etc", "/etc")]
    [InlineData("/..", "/")]
    [InlineData("", "/home/user")]
    public void Paths_resolve_as_envd_resolves_them(string path, string expected)
    {
        Assert.Equal(expected, PathResolver.Resolve(path, User));
    }

    [Fact]
    public void An_empty_path_is_the_default_workdir_when_there_is_one()
    {
        Assert.Equal("/work", PathResolver.Resolve("", User, "/work"));
        Assert.Equal("/home/user/rel", PathResolver.Resolve("rel", User, "/work")); // relative paths stay home-relative
    }

    [Theory]
    [InlineData("~root/x", "another user's home")]
    [InlineData("a\0b", "NUL")]
    public void Unexpandable_paths_are_invalid_arguments(string path, string message)
    {
        var ex = Assert.Throws<ConnectException>(() => PathResolver.Resolve(path, User));
        Assert.Equal(ConnectCode.InvalidArgument, ex.Code);
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x81A4u, "-rw-r--r--")] // regular 0644
    [InlineData(0x41EDu, "drwxr-xr-x")] // directory 0755
    [InlineData(0xA1FFu, "Lrwxrwxrwx")] // symlink
    [InlineData(0x89EDu, "urwxr-xr-x")] // setuid 04755: Go's letters, not ls's "rwsr-xr-x"
    [InlineData(0x43FFu, "dtrwxrwxrwx")] // sticky dir 01777 (/tmp)
    [InlineData(0x21B6u, "Dcrw-rw-rw-")] // char device (/dev/null)
    [InlineData(0x61B0u, "Drw-rw----")] // block device
    [InlineData(0x11A4u, "prw-r--r--")] // fifo
    [InlineData(0xC1EDu, "Srwxr-xr-x")] // socket
    [InlineData(0x8000u, "----------")]
    public void Permissions_use_Gos_FileMode_notation(uint mode, string expected)
    {
        Assert.Equal(expected, EntryInfos.Permissions(mode));
    }

    [Fact]
    public void Statfs_reports_the_filesystem_type()
    {
        Assert.Equal(0x9FA0L, FileSystemKind.TryGetType("/proc", out _)); // PROC_SUPER_MAGIC
        Assert.Null(FileSystemKind.NetworkName(FileSystemKind.TryGetType("/tmp", out _)!.Value));
        Assert.Null(FileSystemKind.TryGetType("/no/such/path", out var errno));
        Assert.Equal(FileErrno.ENOENT, errno);
        Assert.Equal("nfs", FileSystemKind.NetworkName(0x6969));
        Assert.Equal("fuse", FileSystemKind.NetworkName(0x65735546));
        Assert.Equal("cifs", FileSystemKind.NetworkName(unchecked((int)0xFF534D42))); // f_type is a signed long
    }

    [Fact]
    public void Lstat_and_stat_differ_on_a_symlink()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["f"], "12345");
        File.CreateSymbolicLink(dir["l"], dir["f"]);
        Assert.True(FileStatus.Get(dir["l"], followSymlinks: false).IsSymlink);
        var followed = FileStatus.Get(dir["l"], followSymlinks: true);
        Assert.True(followed.IsRegular);
        Assert.Equal(5, followed.Size);
        Assert.Equal(FileErrno.ENOENT, FileStatus.TryGet(dir["missing"], followSymlinks: false, out _));
    }

    [Theory]
    [InlineData("", 10, false)]
    [InlineData("gzip", 10, true)]
    [InlineData("gzip, deflate, br", 10, true)]
    [InlineData("gzip", 0, false)] // an empty file goes as is, so the SDK sees Content-Length 0
    [InlineData("gzip;q=0", 10, false)]
    [InlineData("br", 10, false)] // identity is acceptable unless refused
    [InlineData("*", 10, true)]
    [InlineData("gzip, identity;q=0", 0, true)]
    [InlineData("br, identity;q=0", 10, null)]
    [InlineData("*;q=0", 10, null)]
    public void Downloads_negotiate_gzip_or_identity(string acceptEncoding, long length, bool? gzip)
    {
        Assert.Equal(gzip, Paddock.Agent.Files.DownloadEncoding.Choose(acceptEncoding, length));
    }
}
