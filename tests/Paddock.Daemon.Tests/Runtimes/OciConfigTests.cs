using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>The config.json a sandbox gets, read as runc reads it (no runc started here).</summary>
public sealed class OciConfigTests
{
    private static readonly RuncOptions Options = new() { StateDirectory = "/var/lib/paddock-unit" };

    private static JsonObject Build(SandboxSpec? spec = null)
    {
        spec ??= new SandboxSpec
        {
            SandboxId = "abc",
            TemplateLayers = ["/templates/base/v/rootfs"],
            Limits = new ResourceLimits(CpuCount: 2, MemoryBytes: 512L << 20, MaxPids: 100, DiskBytes: 1L << 30),
            AgentAccessToken = "secret",
            DefaultUser = "user",
            EnvVars = new Dictionary<string, string> { ["LD_PRELOAD"] = "/x.so", ["A"] = "b c" },
        };
        var bundle = new AgentBundle("/var/lib/paddock-unit/agent/f", "ld-linux-x86-64.so.2", "f");
        return OciConfig.Build(spec, new SandboxLayout(Options, spec.SandboxId), bundle, Options, LegacyCgroups.Discover("paddock"));
    }

    [Fact]
    public void Every_namespace_is_new_and_root_maps_to_the_remap_range()
    {
        var linux = Build()["linux"]!;
        var namespaces = linux["namespaces"]!.AsArray().Select(n => (string)n!["type"]!).Order().ToArray();
        Assert.Equal(["ipc", "mount", "network", "pid", "user", "uts"], namespaces);
        Assert.All(linux["namespaces"]!.AsArray(), n => Assert.Null(n!["path"]));
        foreach (var key in (string[])["uidMappings", "gidMappings"])
        {
            var map = Assert.Single(linux[key]!.AsArray())!;
            Assert.Equal(0, (int)map["containerID"]!);
            Assert.Equal(100000u, (uint)map["hostID"]!);
            Assert.Equal(65536u, (uint)map["size"]!);
        }
    }

    [Fact]
    public void Capabilities_are_Dockers_default_set_and_no_new_privs_is_off_by_default()
    {
        var process = Build()["process"]!;
        var caps = process["capabilities"]!;
        string[] docker = ["CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_MKNOD",
            "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT"];
        foreach (var set in (string[])["bounding", "effective", "permitted"])
        {
            Assert.Equal(docker, caps[set]!.AsArray().Select(c => (string)c!).Order().ToArray());
        }
        Assert.Empty(caps["inheritable"]!.AsArray());
        Assert.Empty(caps["ambient"]!.AsArray());
        // Off by default: sudo works for the default user, as in E2B (issue 18; SECURITY.md says why that is safe).
        Assert.False((bool)process["noNewPrivileges"]!);
        Assert.Equal(0, (int)process["user"]!["uid"]!);
    }

    [Fact]
    public void Limits_and_masked_paths_are_set()
    {
        var linux = Build()["linux"]!;
        var resources = linux["resources"]!;
        Assert.Equal(512L << 20, (long)resources["memory"]!["limit"]!);
        Assert.Equal(200_000L, (long)resources["cpu"]!["quota"]!);
        Assert.Equal(100_000UL, (ulong)resources["cpu"]!["period"]!);
        // The limit (100) plus the spawn thread and the agent's reserve; S/work gets 101 at start (PidReserve).
        Assert.Equal(100L + 1 + PidReserve.AgentThreads, (long)resources["pids"]!["limit"]!);
        Assert.Equal("/paddock/abc", (string)linux["cgroupsPath"]!);
        var masked = linux["maskedPaths"]!.AsArray().Select(p => (string)p!).ToList();
        Assert.Contains("/proc/kcore", masked);
        Assert.Contains("/sys/firmware", masked);
        Assert.Contains("/proc/sys", linux["readonlyPaths"]!.AsArray().Select(p => (string)p!));
    }

    [Fact]
    public void Seccomp_denies_by_default_and_keeps_namespace_creation_out()
    {
        var seccomp = Build()["linux"]!["seccomp"]!;
        Assert.Equal("SCMP_ACT_ERRNO", (string)seccomp["defaultAction"]!);
        var rules = seccomp["syscalls"]!.AsArray();
        var allowed = rules.Where(r => (string)r!["action"]! == "SCMP_ACT_ALLOW" && r!["args"] is null)
            .SelectMany(r => r!["names"]!.AsArray().Select(n => (string)n!))
            .ToHashSet();
        Assert.Contains("read", allowed);
        Assert.Contains("chroot", allowed); // CAP_SYS_CHROOT is in the set
        foreach (var denied in (string[])["mount", "umount2", "unshare", "setns", "bpf", "keyctl", "add_key", "kexec_load", "init_module", "reboot", "swapon", "clone", "clone3"])
        {
            Assert.DoesNotContain(denied, allowed);
        }
        var clone = Assert.Single(rules, r => r!["names"]!.AsArray().Any(n => (string)n! == "clone"))!;
        Assert.Equal(0x7E020000UL, (ulong)clone["args"]![0]!["value"]!);
        Assert.Equal("SCMP_CMP_MASKED_EQ", (string)clone["args"]![0]!["op"]!);
        var clone3 = Assert.Single(rules, r => r!["names"]!.AsArray().Any(n => (string)n! == "clone3"))!;
        Assert.Equal(38, (int)clone3["errnoRet"]!);
    }

    [Fact]
    public void Seccomp_admits_the_native_architecture_only()
    {
        var seccomp = Build()["linux"]!["seccomp"]!;
        var architectures = seccomp["architectures"]!.AsArray().Select(a => (string)a!).ToArray();
        // No 32-bit ABI (x86, x32, arm): their system calls go through the kernel's compat entry, and each listed
        // architecture costs runc init a filter to compile at every start.
        var native = System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64
            ? "SCMP_ARCH_X86_64"
            : "SCMP_ARCH_AARCH64";
        Assert.Equal([native], architectures);
        if (native == "SCMP_ARCH_X86_64")
        {
            // Names x86-64 lacks are not sent to runc at all; its own calls still are.
            var names = seccomp["syscalls"]!.AsArray().SelectMany(r => r!["names"]!.AsArray().Select(n => (string)n!)).ToHashSet();
            foreach (var absent in (string[])["chown32", "socketcall", "_llseek", "fcntl64", "clock_gettime64"])
            {
                Assert.DoesNotContain(absent, names);
            }
            foreach (var present in (string[])["read", "chown", "fcntl", "lseek", "clock_gettime", "socket", "clone", "arch_prctl"])
            {
                Assert.Contains(present, names);
            }
        }
    }

    [Fact]
    public void The_agent_is_init_and_starts_through_the_bundled_loader()
    {
        var process = Build()["process"]!;
        var args = process["args"]!.AsArray().Select(a => (string)a!).ToArray();
        var env = process["env"]!.AsArray().Select(e => (string)e!).ToArray();

        Assert.Equal(
            ["/.paddock/lib/ld-linux-x86-64.so.2", "--library-path", "/.paddock/lib", "/.paddock/paddock-agent",
             "--port", "49983", "--access-token", "secret", "--default-user", "user"],
            args);
        Assert.DoesNotContain(env, e => e.StartsWith("PADDOCK_AGENT_SELF_EXEC=", StringComparison.Ordinal));
        // The sandbox's variables reach the agent only as data, never as its own environment.
        Assert.DoesNotContain(env, e => e.StartsWith("LD_PRELOAD=", StringComparison.Ordinal));
        var sandboxEnv = JsonNode.Parse(env.Single(e => e.StartsWith(AgentLaunch.SandboxEnvVariable + "=", StringComparison.Ordinal))[(AgentLaunch.SandboxEnvVariable.Length + 1)..])!;
        Assert.Equal("b c", (string)sandboxEnv["A"]!);
        var bundleMount = Build()["mounts"]!.AsArray().Single(m => (string)m!["destination"]! == "/.paddock")!;
        Assert.Contains("ro", bundleMount["options"]!.AsArray().Select(o => (string)o!));
    }

    [Fact]
    public void A_template_workdir_becomes_the_agents_default_workdir()
    {
        var spec = new SandboxSpec
        {
            SandboxId = "abc",
            TemplateLayers = ["/templates/base/v/rootfs"],
            Limits = new ResourceLimits(CpuCount: 1, MemoryBytes: 512L << 20, MaxPids: 100, DiskBytes: 1L << 30),
            DefaultWorkdir = "/srv/app",
        };
        var args = Build(spec)["process"]!["args"]!.AsArray().Select(a => (string)a!).ToArray();
        Assert.Equal(["--port", "49983", "--default-workdir", "/srv/app"], args[4..]);
    }

    [Fact]
    public void Options_are_read_from_configuration()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["StateDirectory"] = "/srv/paddock",
            ["Runc:CgroupParent"] = "pd",
            ["Runc:StartTimeoutSeconds"] = "12.5",
            ["Runc:NoNewPrivileges"] = "true",
            ["Runc:EnforceDiskSize"] = "false",
            ["Runc:DiskStockDepth"] = "0",
            ["Gvisor:DiskStockDepth"] = "5",
        }).Build();

        var options = RuntimeServiceCollectionExtensions.ReadOptions(configuration);

        Assert.Equal("/srv/paddock", options.StateDirectory);
        Assert.Equal("/srv/paddock/runc", options.RuncRoot);
        Assert.Equal("pd", options.CgroupParent);
        Assert.Equal(TimeSpan.FromSeconds(12.5), options.StartTimeout);
        Assert.True(options.NoNewPrivileges);
        Assert.False(options.EnforceDiskSize);
        Assert.Equal(0, options.DiskStockDepth);
        Assert.Equal(5, RuntimeServiceCollectionExtensions.ReadGvisorOptions(configuration).DiskStockDepth);
        Assert.Equal(2, RuntimeServiceCollectionExtensions.ReadOptions(new ConfigurationBuilder().Build()).DiskStockDepth);
        foreach (var bad in new[] { "-1", "17", "two" })
        {
            var error = Assert.Throws<ArgumentException>(() => RuntimeServiceCollectionExtensions.ReadOptions(
                new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Runc:DiskStockDepth"] = bad }).Build()));
            Assert.Equal($"Runc:DiskStockDepth is a whole number from 0 to 16, not '{bad}'", error.Message);
        }
    }

    [Fact]
    public void Daemons_over_different_state_directories_get_different_cgroup_parents()
    {
        static string ParentOf(string? stateDirectory) => RuntimeServiceCollectionExtensions.ReadOptions(
            new ConfigurationBuilder().AddInMemoryCollection(stateDirectory is null ? [] : new Dictionary<string, string?> { ["StateDirectory"] = stateDirectory }).Build()).CgroupParent;

        Assert.Equal("paddock", ParentOf(null));
        Assert.Equal("paddock", ParentOf("/var/lib/paddock/"));
        var a = ParentOf("/tmp/paddock-a");
        var b = ParentOf("/tmp/paddock-b");
        Assert.Matches("^paddock-[0-9a-f]{10}$", a);
        Assert.NotEqual(a, b);
        Assert.Equal(a, ParentOf("/tmp/paddock-a"));
    }

    [Fact]
    public void Mountinfo_lines_are_parsed_with_their_escapes()
    {
        var entry = MountTable.Parse(@"36 35 0:52 / /var/lib/paddock/sandboxes/a\040b/rootfs rw,relatime shared:1 master:2 - overlay overlay rw,lowerdir=/t")!;
        Assert.Equal("/var/lib/paddock/sandboxes/a b/rootfs", entry.MountPoint);
        Assert.Equal("overlay", entry.FsType);
        Assert.Equal("rw,lowerdir=/t", entry.SuperOptions);
        Assert.Null(MountTable.Parse("garbage"));
    }
}
