using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Templates;

public sealed class DebianMirrorTests
{
    private const string Deb822 = """
        Types: deb-src
        URIs: http://source.example/debian
        Suites: bookworm
        Components: main

        # a comment line
        Types: deb
        URIs: http://disabled.example/debian
        Suites: bookworm
        Enabled: no

        Types: deb
        URIs: http://security.example/debian-security
        Suites: bookworm-security
        Components: main

        Types: deb
        # http://snapshot.example/archive/debian/20250520T000000Z
        URIs: http://mirror.example/debian http://second.example/debian
        Suites: bookworm bookworm-updates
        Components: main
        Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
        """;

    [Fact]
    public void Deb822_gives_the_first_enabled_binary_source_of_the_suite()
    {
        Assert.Equal("http://mirror.example/debian", DebianMirror.FromDeb822(Deb822, "bookworm"));
        Assert.Equal("http://security.example/debian-security", DebianMirror.FromDeb822(Deb822, "bookworm-security"));
        Assert.Null(DebianMirror.FromDeb822(Deb822, "trixie"));
    }

    [Fact]
    public void One_line_sources_are_read_with_and_without_options()
    {
        string[] lines =
        [
            "# deb http://commented.example/debian bookworm main",
            "deb-src http://source.example/debian bookworm main",
            "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main",
            "deb http://other.example/debian trixie main",
        ];
        Assert.Equal("http://mirror.example/debian", DebianMirror.FromLegacy(lines, "bookworm"));
        Assert.Equal("http://other.example/debian", DebianMirror.FromLegacy(lines, "trixie"));
    }

    [Fact]
    public void No_source_for_the_suite_is_an_error_that_names_the_files()
    {
        var dir = Directory.CreateTempSubdirectory("paddock-mirror-");
        try
        {
            var deb822 = Path.Combine(dir.FullName, "debian.sources");
            File.WriteAllText(deb822, Deb822);
            var error = Assert.Throws<InvalidOperationException>(() => DebianMirror.Find("trixie", deb822, Path.Combine(dir.FullName, "missing.list")));
            Assert.Contains(deb822, error.Message, StringComparison.Ordinal);
            Assert.Equal("http://mirror.example/debian", DebianMirror.Find("bookworm", deb822, Path.Combine(dir.FullName, "missing.list")));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }
}
