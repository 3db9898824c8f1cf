using System.Text.Json;
using System.Text.Json.Nodes;
using Paddock.Daemon.Runtimes.Host;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>
/// A gVisor sandbox's config.json (OCI runtime spec, as runsc 2024-07-29 reads it). The agent starts as in the runc
/// tier (<see cref="AgentLaunch"/>, Docker's capability set inside, no_new_privs), in the same user-namespace range,
/// over the same overlay root and agent bundle.
/// </summary>
/// <remarks>
/// What differs from <see cref="OciConfig"/>, and why: no seccomp profile (runsc ignores the OCI one unless told
/// otherwise; the sandbox's system calls go to the Sentry, and the Sentry's own calls to the host are confined by
/// runsc's built-in seccomp filter), no masked or read-only /proc paths (the Sentry's /proc and /sys are its own and
/// show nothing of the host), no device rules (the Sentry has no host devices), and the network namespace is named by
/// path (the daemon makes it and links it before runsc starts, because runsc copies the namespace's addresses and
/// routes into netstack at start). The cgroup limits bind the Sentry and the gofer, which carry every process of the
/// sandbox.
/// </remarks>
internal static class GvisorConfig
{
    public static void Write(SandboxSpec spec, SandboxLayout layout, AgentBundle bundle, GvisorOptions options, ISandboxCgroups cgroups)
    {
        var json = Build(spec, layout, bundle, options, cgroups).ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(layout.ConfigFile, json);
    }

    /// <summary>
    /// The sandbox's resource limits, which every process in it inherits. RLIMIT_NPROC is the tier's process limit:
    /// the pids cgroup cannot be, since it counts the Sentry's host tasks, not the sandbox's processes (a process that
    /// has exited but is not yet waited for holds no host task at all: a Python loop of spawns that never waits was
    /// measured at 1793 processes inside on 502 host tasks, its cgroup limit 1216, with no end in sight). The Sentry
    /// enforces RLIMIT_NPROC per user: the same loop under a limit of 300 stopped with EAGAIN at 298. Per user means a
    /// bomb of the sandbox user's leaves root's share, the agent's, untouched, as the agent's pid reserve does on runc.
    /// </summary>
    private static JsonArray Rlimits(ulong openFiles, int maxPids)
    {
        var rlimits = new JsonArray(new JsonObject { ["type"] = "RLIMIT_NOFILE", ["hard"] = openFiles, ["soft"] = openFiles });
        if (maxPids > 0)
        {
            rlimits.Add(new JsonObject { ["type"] = "RLIMIT_NPROC", ["hard"] = maxPids, ["soft"] = maxPids });
        }
        return rlimits;
    }

    public static JsonObject Build(SandboxSpec spec, SandboxLayout layout, AgentBundle bundle, GvisorOptions options, ISandboxCgroups cgroups)
    {
        var caps = Strings(OciConfig.Capabilities.Order(StringComparer.Ordinal));
        var openFiles = Math.Min(options.OpenFilesLimit, Native.ProcessLimits.OpenFilesHardLimit());
        var limits = spec.Limits;
        var memory = new JsonObject { ["limit"] = limits.MemoryBytes };
        if (cgroups.HasSwapAccounting)
        {
            memory["swap"] = limits.MemoryBytes;
        }
        var mapping = new JsonObject { ["containerID"] = 0, ["hostID"] = options.IdMapping.HostBase, ["size"] = options.IdMapping.Size };
        return new JsonObject
        {
            ["ociVersion"] = "1.0.2-dev",
            ["process"] = new JsonObject
            {
                ["terminal"] = false,
                ["user"] = new JsonObject { ["uid"] = 0, ["gid"] = 0 },
                ["args"] = Strings(AgentLaunch.Arguments(spec, bundle)),
                ["env"] = Strings(AgentLaunch.Environment(spec).Select(kv => $"{kv.Key}={kv.Value}")),
                ["cwd"] = "/",
                ["capabilities"] = new JsonObject
                {
                    ["bounding"] = caps.DeepClone(),
                    ["effective"] = caps.DeepClone(),
                    ["permitted"] = caps.DeepClone(),
                    ["inheritable"] = new JsonArray(),
                    ["ambient"] = new JsonArray(),
                },
                ["rlimits"] = Rlimits(openFiles, limits.MaxPids),
                ["noNewPrivileges"] = options.NoNewPrivileges,
            },
            ["root"] = new JsonObject { ["path"] = layout.Rootfs, ["readonly"] = false },
            ["hostname"] = spec.Hostname,
            ["mounts"] = new JsonArray((JsonNode?[])[
                Mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
                Mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
                Mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
                Mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", "size=65536k"),
                Mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
                Mount(AgentBundle.MountPoint, "bind", bundle.Directory, "rbind", "ro", "nosuid", "nodev"),
                Mount("/etc/hosts", "bind", layout.HostsFile, "rbind", "rw"),
                Mount("/etc/hostname", "bind", layout.HostnameFile, "rbind", "rw"),
                // The daemon's DNS forwarder as the only resolver (SandboxNetworks.ResolvConf), as in the runc tier.
                Mount("/etc/resolv.conf", "bind", layout.ResolvConfFile, "rbind", "rw"),
                .. (spec.Mounts.Any(m => m.Path == "/tmp") ? [] : TmpOnDisk(layout)),
                .. OciConfig.VolumeMounts(spec, layout)]),
            ["linux"] = new JsonObject
            {
                ["uidMappings"] = new JsonArray(mapping.DeepClone()),
                ["gidMappings"] = new JsonArray(mapping.DeepClone()),
                ["resources"] = new JsonObject
                {
                    ["memory"] = memory,
                    ["cpu"] = new JsonObject { ["quota"] = (long)limits.CpuCount * 100_000, ["period"] = 100_000UL },
                    // Host tasks: the sandbox's own processes live inside the Sentry, but each address space has a stub
                    // process on the host, and the Sentry's and gofer's threads count too (HostTaskAllowance).
                    ["pids"] = new JsonObject { ["limit"] = limits.MaxPids > 0 ? limits.MaxPids + (long)options.HostTaskAllowance : limits.MaxPids },
                },
                ["cgroupsPath"] = cgroups.OciPath(layout.SandboxId),
                ["namespaces"] = new JsonArray(
                    new JsonObject { ["type"] = "pid" },
                    new JsonObject { ["type"] = "network", ["path"] = layout.NetnsFile },
                    new JsonObject { ["type"] = "ipc" },
                    new JsonObject { ["type"] = "uts" },
                    new JsonObject { ["type"] = "mount" },
                    new JsonObject { ["type"] = "user" }),
            },
        };
    }

    /// <summary>
    /// /tmp as the overlay's own directory, bound on itself. runsc mounts a tmpfs on a container's /tmp when nothing
    /// is mounted there and the image's is empty (measured: a file written to /tmp was missing from the upper
    /// directory). In the runc tier /tmp is on the sandbox's disk, as in E2B's sandboxes (a tmpfs would charge the
    /// files to the memory limit); so it is here, and a filesystem snapshot holds it.
    /// </summary>
    private static JsonObject[] TmpOnDisk(SandboxLayout layout)
    {
        var tmp = Path.Combine(layout.Rootfs, "tmp");
        return Directory.Exists(tmp) && !File.GetAttributes(tmp).HasFlag(FileAttributes.ReparsePoint)
            ? [Mount("/tmp", "bind", tmp, "rbind", "rw")]
            : [];
    }

    private static JsonObject Mount(string destination, string type, string source, params string[] options) => new()
    {
        ["destination"] = destination,
        ["type"] = type,
        ["source"] = source,
        ["options"] = Strings(options),
    };

    private static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode)JsonValue.Create(v)).ToArray());
}
