using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// The controller files of a v2 sandbox cgroup, laid out in a temporary directory as Documentation/admin-guide/
/// cgroup-v2.rst describes them (these hybrid build machines have no v2 controller to read for real), and the v1
/// memory.oom_control as the v1 driver reads it.
/// </summary>
public sealed class RecordedCgroupTreeTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("paddock-cgtree-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string Write(string relative, string content)
    {
        var path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return path;
    }

    /// <summary>A sandbox cgroup with the memory, cpu and pids controllers, as a host with them enabled shows it.</summary>
    private void WriteSandbox(string dir, string cpuMax, string memoryMax)
    {
        Write($"{dir}/cgroup.controllers", "cpu memory pids\n");
        Write($"{dir}/cgroup.events", "populated 1\nfrozen 0\n");
        Write($"{dir}/cpu.stat", "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\nnr_periods 10\nnr_throttled 2\nthrottled_usec 5000\n");
        Write($"{dir}/cpu.max", cpuMax);
        Write($"{dir}/cpu.weight", "100\n");
        Write($"{dir}/memory.current", "73400320\n");
        Write($"{dir}/memory.max", memoryMax);
        Write($"{dir}/memory.stat", "anon 41943040\nfile 31457280\nkernel 1048576\nactive_anon 0\ninactive_anon 41943040\nactive_file 10485760\ninactive_file 20971520\n");
        Write($"{dir}/memory.events", "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n");
        Write($"{dir}/pids.max", "164\n");
    }

    [Fact]
    public void A_limited_sandbox_reads_as_cores_bytes_and_oom_kills()
    {
        WriteSandbox("paddock/sb1", "200000 100000\n", "536870912\n");
        var cgroups = new UnifiedCgroups(_root, "paddock", CgroupManager.Cgroupfs);
        var sample = cgroups.Sample("sb1")!;
        Assert.Equal(1_234_567_000, sample.CpuUsageNanoseconds);
        Assert.Equal(2.0, sample.CpuQuotaCores);
        Assert.Equal(73400320, sample.MemoryUsageBytes);
        Assert.Equal(536870912, sample.MemoryLimitBytes);
        Assert.Equal(73400320 - 20971520, sample.MemoryWorkingSetBytes);
        Assert.Equal(2, cgroups.OomKills("sb1"));
        Assert.False(cgroups.IsFrozen("sb1"));
        Assert.Equal(Path.Combine(_root, "paddock/sb1"), cgroups.PidsDirectory("sb1"));
        Assert.Equal(["sb1"], cgroups.ExistingSandboxIds());
    }

    [Fact]
    public void Unlimited_cpu_and_memory_read_as_the_hosts_cores_and_no_limit()
    {
        WriteSandbox("paddock/sb2", "max 100000\n", "max\n");
        var sample = new UnifiedCgroups(_root, "paddock", CgroupManager.Cgroupfs).Sample("sb2")!;
        Assert.Equal(Environment.ProcessorCount, sample.CpuQuotaCores);
        Assert.Equal(long.MaxValue, sample.MemoryLimitBytes);
    }

    [Fact]
    public void Without_the_memory_controller_or_the_cgroup_there_is_no_sample()
    {
        Write("paddock/bare/cgroup.events", "populated 0\nfrozen 0\n");
        Write("paddock/bare/cpu.stat", "usage_usec 5\n");
        var cgroups = new UnifiedCgroups(_root, "paddock", CgroupManager.Cgroupfs);
        Assert.Null(cgroups.Sample("bare"));
        Assert.Null(cgroups.OomKills("bare"));
        Assert.Null(cgroups.PidsDirectory("bare"));
        Assert.Null(cgroups.Sample("gone"));
        Assert.Null(cgroups.IsFrozen("gone"));
        Assert.Empty(cgroups.ProcessesOf("gone"));
    }

    [Fact]
    public void Under_systemd_sandboxes_are_found_by_their_scope_names()
    {
        WriteSandbox("paddock.slice/paddock-sb3.scope", "max 100000\n", "max\n");
        Write("paddock.slice/other.scope/cgroup.events", "populated 0\n");
        var cgroups = new UnifiedCgroups(_root, "paddock", CgroupManager.Systemd);
        Assert.Equal(["sb3"], cgroups.ExistingSandboxIds());
        Assert.NotNull(cgroups.Sample("sb3"));
        Assert.Equal("paddock.slice:paddock:sb3", cgroups.OciPath("sb3"));
    }

    [Fact]
    public void The_cpu_weight_is_enabled_down_to_the_parent_and_written()
    {
        Write("cgroup.controllers", "cpuset cpu io memory pids\n");
        Write("cgroup.subtree_control", "memory\n");
        Write("paddock/cgroup.controllers", "cpu memory\n");
        Write("paddock/cgroup.subtree_control", "");
        WriteSandbox("paddock/sb4", "max 100000\n", "max\n");
        var cgroups = new UnifiedCgroups(_root, "paddock", CgroupManager.Cgroupfs);
        Assert.True(cgroups.SetCpuWeight("sb4", background: true));
        Assert.Equal("1", File.ReadAllText(Path.Combine(_root, "paddock/sb4/cpu.weight")));
        // A regular file takes the write as its content; the kernel would add the controller to the list.
        Assert.Equal("+cpu", File.ReadAllText(Path.Combine(_root, "cgroup.subtree_control")));
        Assert.Equal("+cpu", File.ReadAllText(Path.Combine(_root, "paddock/cgroup.subtree_control")));
        Assert.True(cgroups.SetCpuWeight("sb4", background: false));
        Assert.Equal("100", File.ReadAllText(Path.Combine(_root, "paddock/sb4/cpu.weight")));
    }

    [Fact]
    public void Without_a_cpu_controller_no_weight_is_set_and_no_cgroup_is_made()
    {
        Write("cgroup.controllers", "memory pids\n");
        var cgroups = new UnifiedCgroups(_root, "paddock", CgroupManager.Cgroupfs);
        Assert.False(cgroups.SetCpuWeight("sb5", background: true));
        Assert.False(Directory.Exists(Path.Combine(_root, "paddock/sb5")));
    }

    [Fact]
    public void V1_reads_oom_kills_from_memory_oom_control()
    {
        Write("memory/paddock/sb6/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
        var mounts = new List<MountEntry> { new(1, 0, "/", Path.Combine(_root, "memory"), "cgroup", "cgroup", "rw,memory") };
        var cgroups = Assert.IsType<LegacyCgroups>(Cgroups.Detect("paddock", mounts: mounts));
        Assert.Equal(4, cgroups.OomKills("sb6"));
        Assert.Null(cgroups.OomKills("gone"));
    }
}
