using Paddock.Daemon.Native;
using Paddock.Daemon.Templates;
using static Paddock.Daemon.Tests.Runtimes.TestEnvironment;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>
/// The wire form and the check of a layer sent to another node (cluster mode): a layer with what overlay layers hold
/// (a whiteout device, an opaque directory, a symbolic link, a hard link, shifted owners) goes through tar and comes
/// out with the same digest; the digest changes when a byte, a mode, an owner or an attribute does; and a received
/// layer whose files do not match its digest is refused with a clear error and leaves nothing behind. Needs root
/// (device nodes, trusted.* attributes, chown).
/// </summary>
public sealed class LayerTransferTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-layertransfer-");

    public LayerTransferTests() => RequireRootAndRunc();

    private string P(string relative) => Path.Combine(_dir.FullName, relative);

    /// <summary>A layer named <paramref name="name"/> under <c>from/</c>, with the kinds of entries a snapshot layer has.</summary>
    private async Task<string> MakeLayerAsync(string name)
    {
        var layer = P($"from/{name}");
        Directory.CreateDirectory(Path.Combine(layer, "opt/opaque"));
        File.WriteAllText(Path.Combine(layer, "opt/marker"), "across nodes\n");
        File.WriteAllText(Path.Combine(layer, "opt/opaque/inside"), "inside");
        Files.SetAttribute(Path.Combine(layer, "opt/opaque"), "trusted.overlay.opaque", "y"u8.ToArray());
        File.CreateSymbolicLink(Path.Combine(layer, "opt/link"), "marker");
        Files.ChangeOwner(Path.Combine(layer, "opt/marker"), 100000, 100000);
        var ct = Timeout(TimeSpan.FromSeconds(30));
        foreach (var (program, args) in new (string, string[])[]
        {
            ("mknod", [Path.Combine(layer, "opt/deleted"), "c", "0", "0"]),
            ("ln", [Path.Combine(layer, "opt/marker"), Path.Combine(layer, "opt/marker.hard")]),
        })
        {
            var run = await ExternalCommand.RunAsync(program, args, ct);
            Assert.True(run.Succeeded, run.Describe());
        }
        return layer;
    }

    private async Task<MemoryStream> ArchiveAsync(string name)
    {
        var archive = new MemoryStream();
        await LayerTransfer.WriteArchiveAsync(P("from"), name, archive, Timeout(TimeSpan.FromSeconds(30)));
        archive.Position = 0;
        return archive;
    }

    [Fact]
    public async Task A_layer_sent_as_tar_is_installed_whole_with_the_same_digest()
    {
        var layer = await MakeLayerAsync("abcdefghij0123456789");
        var digest = LayerTransfer.Digest(layer);
        Assert.StartsWith("sha256:", digest, StringComparison.Ordinal);

        await using var archive = await ArchiveAsync("abcdefghij0123456789");
        var bytes = await LayerTransfer.InstallAsync(archive, P("to"), "abcdefghij0123456789", digest, Timeout(TimeSpan.FromSeconds(60)));

        var installed = P("to/abcdefghij0123456789");
        Assert.True(bytes > 0);
        Assert.Equal(digest, LayerTransfer.Digest(installed));
        Assert.Equal("across nodes\n", File.ReadAllText(Path.Combine(installed, "opt/marker")));
        Assert.Equal(100000u, Files.Stat(Path.Combine(installed, "opt/marker")).Uid);
        Assert.Equal(2u, Files.Stat(Path.Combine(installed, "opt/marker")).LinkCount);
        Assert.Equal("y"u8.ToArray(), Files.GetAttribute(Path.Combine(installed, "opt/opaque"), "trusted.overlay.opaque"));
        Assert.Equal(0x2000u, Files.Stat(Path.Combine(installed, "opt/deleted")).Type);
        // Nothing but the layer: the staging directory is gone.
        Assert.Equal(["abcdefghij0123456789"], Directory.GetFileSystemEntries(P("to")).Select(Path.GetFileName));
    }

    [Fact]
    public async Task The_digest_covers_bytes_modes_owners_attributes_and_devices()
    {
        var layer = await MakeLayerAsync("layer");
        var digests = new List<string> { LayerTransfer.Digest(layer) };
        // The same again: stable.
        Assert.Equal(digests[0], LayerTransfer.Digest(layer));
        File.WriteAllText(Path.Combine(layer, "opt/marker"), "across nodeS\n");
        digests.Add(LayerTransfer.Digest(layer));
        Files.ChangeMode(Path.Combine(layer, "opt/marker"), 0x1ED); // 0755
        digests.Add(LayerTransfer.Digest(layer));
        Files.ChangeOwner(Path.Combine(layer, "opt/marker"), 100001, 100000);
        digests.Add(LayerTransfer.Digest(layer));
        Files.SetAttribute(Path.Combine(layer, "opt/opaque"), "trusted.overlay.opaque", "n"u8.ToArray());
        digests.Add(LayerTransfer.Digest(layer));
        File.Delete(Path.Combine(layer, "opt/deleted"));
        var mknod = await ExternalCommand.RunAsync("mknod", [Path.Combine(layer, "opt/deleted"), "c", "1", "3"], Timeout(TimeSpan.FromSeconds(10)));
        Assert.True(mknod.Succeeded, mknod.Describe());
        digests.Add(LayerTransfer.Digest(layer));
        File.Move(Path.Combine(layer, "opt/opaque/inside"), Path.Combine(layer, "opt/opaque/renamed"));
        digests.Add(LayerTransfer.Digest(layer));
        Assert.Equal(digests.Count, digests.Distinct(StringComparer.Ordinal).Count());
    }

    [Fact]
    public async Task A_layer_that_does_not_match_its_digest_is_refused_and_nothing_stays()
    {
        var layer = await MakeLayerAsync("abcdefghij0123456789");
        var recorded = LayerTransfer.Digest(layer);
        // The holder's copy changed after its digest was recorded (a disk error, a hand edit): what it sends is not it.
        File.AppendAllText(Path.Combine(layer, "opt/marker"), "tampered");
        await using var archive = await ArchiveAsync("abcdefghij0123456789");

        var error = await Assert.ThrowsAsync<LayerDigestException>(() =>
            LayerTransfer.InstallAsync(archive, P("to"), "abcdefghij0123456789", recorded, Timeout(TimeSpan.FromSeconds(60))));

        Assert.Contains("abcdefghij0123456789", error.Message, StringComparison.Ordinal);
        Assert.Contains($"not {recorded}", error.Message, StringComparison.Ordinal);
        Assert.Contains("nothing was kept", error.Message, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(P("to")));
    }

    [Fact]
    public async Task An_archive_that_is_not_the_named_layer_or_not_a_tar_is_refused_and_nothing_stays()
    {
        var layer = await MakeLayerAsync("otherlayer0000000000");
        var digest = LayerTransfer.Digest(layer);
        await using (var archive = await ArchiveAsync("otherlayer0000000000"))
        {
            var error = await Assert.ThrowsAsync<LayerDigestException>(() =>
                LayerTransfer.InstallAsync(archive, P("to"), "abcdefghij0123456789", digest, Timeout(TimeSpan.FromSeconds(60))));
            Assert.Contains("not one directory named abcdefghij0123456789", error.Message, StringComparison.Ordinal);
        }
        await using (var garbage = new MemoryStream("this is not a tar archive at all"u8.ToArray()))
        {
            var error = await Assert.ThrowsAsync<LayerDigestException>(() =>
                LayerTransfer.InstallAsync(garbage, P("to"), "abcdefghij0123456789", digest, Timeout(TimeSpan.FromSeconds(60))));
            Assert.Contains("unpacking what was received failed", error.Message, StringComparison.Ordinal);
        }
        Assert.Empty(Directory.GetFileSystemEntries(P("to")));
    }

    public void Dispose() => _dir.Delete(recursive: true);
}
