using System.Formats.Tar;
using System.Security.Cryptography;
using System.Text;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>
/// `paddock template import` against the real daemon: an OCI layout directory (tarred by the CLI as it uploads) and
/// an archive file become templates that `paddock template ls` lists; a corrupt blob and a missing path fail with
/// the daemon's reason and the CLI's exit codes.
/// </summary>
public sealed class ImportCliTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    [Fact]
    public async Task Import_of_a_layout_directory_and_an_archive_file_and_their_failures()
    {
        var env = Cli.DaemonEnv(fixture.Daemon);
        var layout = Directory.CreateTempSubdirectory("paddock-cli-image-").FullName;
        try
        {
            var files = Layout("hello from the cli\n");
            foreach (var (path, bytes) in files)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(layout, path))!);
                await File.WriteAllBytesAsync(Path.Combine(layout, path), bytes);
            }
            var fromDir = await Cli.RunAsync(env, "template", "import", layout, "--name", "cli-dir");
            Assert.True(fromDir.ExitCode == 0, fromDir.ToString());
            Assert.Contains("as template", fromDir.Stdout, StringComparison.Ordinal);

            var archive = Path.Combine(layout, "image.tar");
            await File.WriteAllBytesAsync(archive, Tar(files));
            var fromFile = await Cli.RunAsync(env, "template", "import", archive, "--name", "cli-file", "--json");
            Assert.True(fromFile.ExitCode == 0, fromFile.ToString());
            Assert.Contains("\"templateID\"", fromFile.Stdout, StringComparison.Ordinal);

            var listed = await Cli.RunAsync(env, "template", "ls");
            Assert.Contains("cli-dir", listed.Stdout, StringComparison.Ordinal);
            Assert.Contains("cli-file", listed.Stdout, StringComparison.Ordinal);

            // The same layout with one byte of the layer changed: its digest no longer matches.
            var corrupt = Layout("hello from the cli\n");
            var layer = corrupt.Keys.Single(k => k.StartsWith("blobs/", StringComparison.Ordinal) && corrupt[k].Length > 100 && corrupt[k][0] != (byte)'{');
            corrupt[layer][^3] ^= 0x55;
            await File.WriteAllBytesAsync(archive, Tar(corrupt));
            var refused = await Cli.RunAsync(env, "template", "import", archive, "--name", "cli-bad");
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains("import refused (400)", refused.Stderr, StringComparison.Ordinal);
            Assert.Contains("digest", refused.Stderr, StringComparison.Ordinal);

            var missing = await Cli.RunAsync(env, "template", "import", Path.Combine(layout, "nothing-here"), "--name", "x");
            Assert.Equal(66, missing.ExitCode);
        }
        finally
        {
            Directory.Delete(layout, recursive: true);
        }
    }

    /// <summary>An OCI layout of one uncompressed layer holding /hello.txt.</summary>
    private static Dictionary<string, byte[]> Layout(string hello)
    {
        var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "hello.txt") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(hello)) });
        }
        var layer = tar.ToArray();
        var config = Encoding.UTF8.GetBytes("""{"architecture":"amd64","os":"linux","config":{"Env":["A=1"]},"rootfs":{"type":"layers","diff_ids":[""" + $"\"{Digest(layer)}\"" + "]}}");
        var manifest = Encoding.UTF8.GetBytes($$"""
            {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
             "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{Digest(config)}}","size":{{config.Length}}},
             "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{{Digest(layer)}}","size":{{layer.Length}}}]}
            """);
        var index = Encoding.UTF8.GetBytes($$"""{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{Digest(manifest)}}","size":{{manifest.Length}}}]}""");
        return new Dictionary<string, byte[]>
        {
            ["oci-layout"] = """{"imageLayoutVersion":"1.0.0"}"""u8.ToArray(),
            ["index.json"] = index,
            [Blob(config)] = config,
            [Blob(manifest)] = manifest,
            [Blob(layer)] = layer,
        };
    }

    private static string Digest(byte[] bytes) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static string Blob(byte[] bytes) => "blobs/sha256/" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static byte[] Tar(Dictionary<string, byte[]> files)
    {
        var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Pax, leaveOpen: true))
        {
            foreach (var (path, bytes) in files)
            {
                writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, path) { DataStream = new MemoryStream(bytes) });
            }
        }
        return output.ToArray();
    }
}
