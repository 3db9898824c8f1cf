using System.Text.Json;
using Paddock.Daemon.Volumes;

namespace Paddock.Daemon.Tests.Volumes;

/// <summary>The checks on a create's volumeMounts and on volume names: hostile input gets a 400 saying what is wrong.</summary>
public sealed class VolumeMountPathsTests
{
    private static IReadOnlyList<VolumeMountRequest> Parse(string json) => VolumeMountPaths.Parse(JsonDocument.Parse(json).RootElement.Clone());

    [Theory]
    [InlineData("""[{"name":"v","path":"data"}]""", "absolute")]
    [InlineData("""[{"name":"v","path":"/"}]""", "cannot be mounted at /")]
    [InlineData("""[{"name":"v","path":"/data/../etc"}]""", "normalized")]
    [InlineData("""[{"name":"v","path":"/data/./x"}]""", "normalized")]
    [InlineData("""[{"name":"v","path":"/data//x"}]""", "normalized")]
    [InlineData("""[{"name":"v","path":"/data/"}]""", "normalized")]
    [InlineData("""[{"name":"v","path":"/proc"}]""", "would hide /proc")]
    [InlineData("""[{"name":"v","path":"/proc/self"}]""", "would hide /proc")]
    [InlineData("""[{"name":"v","path":"/dev/shm"}]""", "would hide /dev")]
    [InlineData("""[{"name":"v","path":"/sys"}]""", "would hide /sys")]
    [InlineData("""[{"name":"v","path":"/.paddock"}]""", "would hide /.paddock")]
    [InlineData("""[{"name":"v","path":"/etc"}]""", "would hide /etc/hosts")]
    [InlineData("""[{"name":"v","path":"/etc/resolv.conf"}]""", "would hide /etc/resolv.conf")]
    [InlineData("""[{"name":"v","path":"/da\u0000ta"}]""", "control character")]
    [InlineData("""[{"name":"v","path":"/a"},{"name":"w","path":"/a"}]""", "two volumes at /a")]
    [InlineData("""[{"name":"v","path":"/a"},{"name":"w","path":"/a/b"}]""", "cannot be nested")]
    [InlineData("""[{"name":"../v","path":"/a"}]""", "not a valid volume name")]
    [InlineData("""[{"name":"v w","path":"/a"}]""", "not a valid volume name")]
    [InlineData("""[{"name":"","path":"/a"}]""", "name is required")]
    [InlineData("""[{"path":"/a"}]""", "name is required")]
    [InlineData("""[{"name":"v"}]""", "path is required")]
    [InlineData("""{"name":"v","path":"/a"}""", "must be an array")]
    [InlineData("""["v:/a"]""", "must be an object")]
    public void Hostile_mounts_are_refused_with_the_reason(string json, string reason)
    {
        var ex = Assert.Throws<VolumeException>(() => Parse(json));
        Assert.Equal(400, ex.StatusCode);
        Assert.Contains(reason, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Good_mounts_pass_as_given()
    {
        var mounts = Parse("""[{"name":"data","path":"/home/user/data"},{"name":"cache_2","path":"/mnt/cache"},{"name":"t","path":"/tmp"}]""");
        Assert.Equal(
            [new VolumeMountRequest("data", "/home/user/data"), new VolumeMountRequest("cache_2", "/mnt/cache"), new VolumeMountRequest("t", "/tmp")],
            mounts);
        Assert.Empty(VolumeMountPaths.Parse(null));
    }

    [Fact]
    public void Too_many_mounts_are_refused()
    {
        var json = "[" + string.Join(',', Enumerable.Range(0, VolumeMountPaths.MaxMounts + 1).Select(i => $$"""{"name":"v{{i}}","path":"/m{{i}}"}""")) + "]";
        Assert.Contains("at most", Assert.Throws<VolumeException>(() => Parse(json)).Message, StringComparison.Ordinal);
    }
}
