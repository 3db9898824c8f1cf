using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// runc or crun, from Runc:Runtime, what is installed and what the host's cgroup2 holds (a recorded cgroup2 root in a
/// temporary directory; no mount is made: the rebinding itself only happens with crun on a blocked host, which these
/// cases avoid or expect to be refused).
/// </summary>
public sealed class OciRuntimeChoiceTests : IDisposable
{
    private readonly string _unified = Directory.CreateTempSubdirectory("paddock-cg2root-").FullName;

    public void Dispose() => Directory.Delete(_unified, recursive: true);

    private List<MountEntry> Hybrid(string controllers, string subtreeControl = "")
    {
        File.WriteAllText(Path.Combine(_unified, "cgroup.controllers"), controllers + "\n");
        File.WriteAllText(Path.Combine(_unified, "cgroup.subtree_control"), subtreeControl + "\n");
        return
        [
            new(1, 0, "/", "/sys/fs/cgroup/memory", "cgroup", "cgroup", "rw,memory"),
            new(2, 0, "/", _unified, "cgroup2", "cgroup2", "rw"),
        ];
    }

    private List<MountEntry> Unified()
    {
        File.WriteAllText(Path.Combine(_unified, "cgroup.controllers"), "cpuset cpu io memory hugetlb pids\n");
        return [new(2, 0, "/", _unified, "cgroup2", "cgroup2", "rw,nsdelegate")];
    }

    private static OciRuntimeSelection Choose(OciRuntimeKind kind, List<MountEntry> mounts, bool crunInstalled, string runcBinary = "runc") =>
        OciRuntimeChoice.Choose(new RuncOptions { Runtime = kind, RuncBinary = runcBinary }, NullLogger.Instance, mounts,
            name => crunInstalled && name == "crun" ? "/usr/bin/crun" : null);

    [Fact]
    public void Auto_takes_crun_on_a_unified_host_and_on_a_hybrid_one_whose_cgroup2_is_empty()
    {
        Assert.Equal("crun", Choose(OciRuntimeKind.Auto, Unified(), crunInstalled: true).Name);
        var empty = Choose(OciRuntimeKind.Auto, Hybrid(""), crunInstalled: true);
        Assert.Equal(("crun", "/usr/bin/crun"), (empty.Name, empty.Binary));
    }

    [Fact]
    public void Auto_keeps_runc_where_crun_would_need_the_host_changed_or_is_missing()
    {
        var hugetlb = Choose(OciRuntimeKind.Auto, Hybrid("hugetlb"), crunInstalled: true);
        Assert.Equal("runc", hugetlb.Name);
        Assert.Contains("hugetlb", hugetlb.Reason, StringComparison.Ordinal);
        Assert.Equal("runc", Choose(OciRuntimeKind.Auto, Unified(), crunInstalled: false).Name);
    }

    [Fact]
    public void Crun_is_refused_with_a_reason_when_it_is_missing_or_the_host_cannot_be_fixed_harmlessly()
    {
        Assert.Contains("apt-get install crun", Assert.Throws<ArgumentException>(() => Choose(OciRuntimeKind.Crun, Unified(), crunInstalled: false)).Message, StringComparison.Ordinal);
        // hugetlb in use by cgroup2 cgroups: moving it would take their limits away (and the kernel refuses it).
        Assert.Contains("enabled", Assert.Throws<ArgumentException>(() => Choose(OciRuntimeKind.Crun, Hybrid("hugetlb", "hugetlb"), crunInstalled: true)).Message, StringComparison.Ordinal);
        // Another controller than hugetlb left in cgroup2: not the case the rebinding covers.
        Assert.Contains("memory", Assert.Throws<ArgumentException>(() => Choose(OciRuntimeKind.Crun, Hybrid("hugetlb memory"), crunInstalled: true)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Runc_when_asked_and_an_explicit_binary_wins()
    {
        Assert.Equal("runc", Choose(OciRuntimeKind.Runc, Unified(), crunInstalled: true).Name);
        var own = Choose(OciRuntimeKind.Crun, Unified(), crunInstalled: false, runcBinary: "/opt/runc-1.2/runc");
        Assert.Equal(("runc", "/opt/runc-1.2/runc"), (own.Name, own.Binary));
    }

    [Fact]
    public void Runc_Runtime_is_read_from_configuration_and_a_wrong_value_names_the_choices()
    {
        static RuncOptions Read(string? value) => Daemon.Runtimes.RuntimeServiceCollectionExtensions.ReadOptions(
            new Microsoft.Extensions.Configuration.ConfigurationBuilder()
                .AddInMemoryCollection(value is null ? [] : [new("Runc:Runtime", value)]).Build());
        Assert.Equal(OciRuntimeKind.Auto, Read(null).Runtime);
        Assert.Equal(OciRuntimeKind.Crun, Read("crun").Runtime);
        Assert.Contains("runc, crun or auto", Assert.Throws<ArgumentException>(() => Read("kata")).Message, StringComparison.Ordinal);
    }
}
