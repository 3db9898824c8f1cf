using Microsoft.Extensions.Configuration;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// Which cgroup driver a host gets, from mount tables recorded on real hosts, and the cgroupsPath each cgroup manager
/// is given. No cgroup is touched here.
/// </summary>
public sealed class CgroupLayoutTests
{
    // These build machines (Debian 12 VM, kernel 6.18): v1 controllers each on its own, cgroup2 at .../unified.
    private static readonly string[] Hybrid =
    [
        "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
        "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
        "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
        "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids",
        "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
        "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
    ];

    // A stock Debian 12 / Ubuntu 22.04 host booted by systemd: the unified hierarchy only.
    private static readonly string[] Unified =
    [
        "22 27 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
        "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot",
    ];

    // An old v1-only host (no cgroup2 mounted at all).
    private static readonly string[] V1Only =
    [
        "31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct",
        "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
    ];

    // systemd's "hybrid" with no v1 controller: only the name=systemd tracking hierarchy beside cgroup2.
    private static readonly string[] UnifiedWithNamedV1 =
    [
        "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd",
        "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate",
    ];

    private static IReadOnlyList<MountEntry> Mounts(string[] lines) => lines.Select(l => MountTable.Parse(l)!).ToList();

    [Fact]
    public void A_host_with_v1_controllers_gets_the_v1_driver_and_hybrid_is_named()
    {
        var hybrid = Cgroups.Detect("paddock", mounts: Mounts(Hybrid));
        Assert.IsType<LegacyCgroups>(hybrid);
        Assert.Equal("hybrid", hybrid.Mode);
        var v1 = Cgroups.Detect("paddock", mounts: Mounts(V1Only));
        Assert.IsType<LegacyCgroups>(v1);
        Assert.Equal("v1", v1.Mode);
        Assert.Equal("/paddock/abc", hybrid.OciPath("abc"));
    }

    [Fact]
    public void A_cgroup2_only_host_gets_the_unified_driver_at_its_mount_point()
    {
        var unified = Assert.IsType<UnifiedCgroups>(Cgroups.Detect("paddock", mounts: Mounts(Unified)));
        Assert.Equal("unified", unified.Mode);
        Assert.Equal("/sys/fs/cgroup", unified.Root);
        Assert.Equal("/paddock/abc", unified.OciPath("abc"));
        Assert.Equal("/sys/fs/cgroup/paddock/abc", unified.Directory("abc"));

        // name=systemd is a tracking hierarchy with no controller: the host is unified for every resource.
        var named = Assert.IsType<UnifiedCgroups>(Cgroups.Detect("paddock", mounts: Mounts(UnifiedWithNamedV1)));
        Assert.Equal("/sys/fs/cgroup/unified", named.Root);
    }

    [Fact]
    public void The_systemd_manager_gets_slice_prefix_name_and_its_scope_directory()
    {
        var cgroups = Assert.IsType<UnifiedCgroups>(Cgroups.Detect("paddock", CgroupManager.Systemd, Mounts(Unified)));
        Assert.Equal("paddock.slice:paddock:abc", cgroups.OciPath("abc"));
        Assert.Equal("/sys/fs/cgroup/paddock.slice/paddock-abc.scope", cgroups.Directory("abc"));
        // A derived parent (a second daemon's) nests under its prefix slice, as systemd lays slices out.
        var second = new UnifiedCgroups("/sys/fs/cgroup", "paddock-1a2b3c", CgroupManager.Systemd);
        Assert.Equal("/sys/fs/cgroup/paddock.slice/paddock-1a2b3c.slice/paddock-x.scope", second.Directory("x"));
        Assert.Throws<ArgumentException>(() => new UnifiedCgroups("/sys/fs/cgroup", "a/b", CgroupManager.Systemd));
    }

    [Fact]
    public void The_systemd_manager_is_refused_on_a_hybrid_host_with_a_message_that_says_why()
    {
        var ex = Assert.Throws<ArgumentException>(() => Cgroups.Detect("paddock", CgroupManager.Systemd, Mounts(Hybrid)));
        Assert.Contains("cgroupfs", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("-.slice", "")]
    [InlineData("paddock.slice", "paddock.slice")]
    [InlineData("a-b-c.slice", "a.slice/a-b.slice/a-b-c.slice")]
    public void Slices_nest_under_their_prefixes(string slice, string path) => Assert.Equal(path, Cgroups.SystemdSlicePath(slice));

    [Theory]
    [InlineData("paddock")]
    [InlineData("a--b.slice")]
    [InlineData("-a.slice")]
    public void A_malformed_slice_name_is_refused(string slice) => Assert.Throws<ArgumentException>(() => Cgroups.SystemdSlicePath(slice));

    [Fact]
    public void Runc_CgroupManager_is_read_from_configuration_and_a_wrong_value_names_the_choices()
    {
        static Daemon.Runtimes.Runc.RuncOptions Read(string? value) => Daemon.Runtimes.RuntimeServiceCollectionExtensions.ReadOptions(
            new Microsoft.Extensions.Configuration.ConfigurationBuilder()
                .AddInMemoryCollection(value is null ? [] : [new("Runc:CgroupManager", value)]).Build());
        Assert.Equal(CgroupManager.Cgroupfs, Read(null).CgroupManager);
        Assert.Equal(CgroupManager.Systemd, Read("systemd").CgroupManager);
        var ex = Assert.Throws<ArgumentException>(() => Read("1"));
        Assert.Contains("cgroupfs or systemd", ex.Message, StringComparison.Ordinal);
    }
}
