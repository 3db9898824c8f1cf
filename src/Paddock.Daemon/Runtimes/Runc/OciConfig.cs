using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>
/// Writes a sandbox's config.json (OCI runtime spec 1.0.2, as runc 1.1.5 reads it). The choices follow Docker's
/// defaults for a container with userns-remap, and name where they differ.
/// </summary>
internal static class OciConfig
{
    /// <summary>
    /// Docker's default capability set (moby, oci/caps/defaults.go), nothing more. The agent runs as root inside and
    /// holds these; a command it starts as another user holds none.
    /// </summary>
    public static readonly IReadOnlySet<string> Capabilities = new HashSet<string>(StringComparer.Ordinal)
    {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    };

    /// <summary>Paths runc hides (/dev/null over files, an empty read-only tmpfs over directories), as Docker does.</summary>
    public static readonly string[] MaskedPaths =
    [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
    ];

    /// <summary>Paths runc remounts read-only, as Docker does.</summary>
    public static readonly string[] ReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

    public static void Write(SandboxSpec spec, SandboxLayout layout, AgentBundle bundle, RuncOptions options, ISandboxCgroups cgroups)
    {
        var json = Build(spec, layout, bundle, options, cgroups).ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(layout.ConfigFile, json);
    }

    public static JsonObject Build(SandboxSpec spec, SandboxLayout layout, AgentBundle bundle, RuncOptions options, ISandboxCgroups cgroups)
    {
        var args = AgentLaunch.Arguments(spec, bundle);
        var env = AgentLaunch.Environment(spec);

        var caps = Strings(Capabilities.Order(StringComparer.Ordinal));
        var openFiles = Math.Min(options.OpenFilesLimit, Native.ProcessLimits.OpenFilesHardLimit());
        var map = options.IdMapping;
        var limits = spec.Limits;

        var memory = new JsonObject { ["limit"] = limits.MemoryBytes };
        if (cgroups.HasSwapAccounting)
        {
            // memory+swap equal to memory: no swap beyond the limit.
            memory["swap"] = limits.MemoryBytes;
        }

        return new JsonObject
        {
            ["ociVersion"] = "1.0.2-dev",
            ["process"] = new JsonObject
            {
                ["terminal"] = false,
                ["user"] = new JsonObject { ["uid"] = 0, ["gid"] = 0 },
                ["args"] = Strings(args),
                ["env"] = Strings(env.Select(kv => $"{kv.Key}={kv.Value}")),
                ["cwd"] = "/",
                ["capabilities"] = new JsonObject
                {
                    ["bounding"] = caps.DeepClone(),
                    ["effective"] = caps.DeepClone(),
                    ["permitted"] = caps.DeepClone(),
                    // Empty inheritable and ambient sets: a program exec'd by a non-root user gains nothing
                    // (Docker's fix for CVE-2022-24769).
                    ["inheritable"] = new JsonArray(),
                    ["ambient"] = new JsonArray(),
                },
                ["rlimits"] = new JsonArray(new JsonObject
                {
                    ["type"] = "RLIMIT_NOFILE",
                    ["hard"] = openFiles,
                    ["soft"] = openFiles,
                }),
                ["noNewPrivileges"] = options.NoNewPrivileges,
            },
            ["root"] = new JsonObject { ["path"] = layout.Rootfs, ["readonly"] = false },
            ["hostname"] = spec.Hostname,
            ["mounts"] = Mounts(spec, layout, bundle, options),
            ["linux"] = new JsonObject
            {
                ["uidMappings"] = new JsonArray(Mapping(map)),
                ["gidMappings"] = new JsonArray(Mapping(map)),
                ["sysctl"] = new JsonObject
                {
                    // Any port for the sandbox's root, as Docker sets it: the namespace is the sandbox's alone.
                    ["net.ipv4.ip_unprivileged_port_start"] = "0",
                },
                ["resources"] = new JsonObject
                {
                    // Deny every device; runc adds its fixed allowlist (null, zero, full, random, urandom, tty, ptmx, pts).
                    ["devices"] = new JsonArray(new JsonObject { ["allow"] = false, ["access"] = "rwm" }),
                    ["memory"] = memory,
                    ["cpu"] = new JsonObject
                    {
                        ["quota"] = (long)limits.CpuCount * 100_000,
                        ["period"] = 100_000UL,
                    },
                    // The limit plus the agent's reserve: the sandbox's processes get the limit itself in S/work (PidReserve).
                    ["pids"] = new JsonObject { ["limit"] = PidReserve.SandboxLimit(limits.MaxPids) },
                },
                ["cgroupsPath"] = cgroups.OciPath(layout.SandboxId),
                ["namespaces"] = new JsonArray(
                    // No path for "network": runc makes a new one owned by the sandbox's user namespace; the daemon
                    // binds it once the container runs (see NetworkNamespaces).
                    ((string[])["pid", "network", "ipc", "uts", "mount", "user"])
                        .Select(t => (JsonNode)new JsonObject { ["type"] = t })
                        .ToArray()),
                ["maskedPaths"] = Strings(MaskedPaths),
                ["readonlyPaths"] = Strings(ReadonlyPaths),
                ["seccomp"] = SeccompProfile.Build(Capabilities),
            },
        };
    }

    private static JsonArray Mounts(SandboxSpec spec, SandboxLayout layout, AgentBundle bundle, RuncOptions options)
    {
        var shm = $"size={options.ShmBytes / 1024}k";
        var mounts = new JsonArray(
            Mount("/proc", "proc", "proc", "nosuid", "noexec", "nodev"),
            // /dev is a small tmpfs with only the nodes runc creates (bind mounts of the host's null, zero, full,
            // random, urandom, tty in a user namespace), plus pts, shm and mqueue below.
            Mount("/dev", "tmpfs", "tmpfs", "nosuid", "strictatime", "mode=755", "size=65536k"),
            Mount("/dev/pts", "devpts", "devpts", "nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"),
            Mount("/dev/shm", "tmpfs", "shm", "nosuid", "noexec", "nodev", "mode=1777", shm),
            Mount("/dev/mqueue", "mqueue", "mqueue", "nosuid", "noexec", "nodev"),
            Mount("/sys", "sysfs", "sysfs", "nosuid", "noexec", "nodev", "ro"),
            Mount("/sys/fs/cgroup", "cgroup", "cgroup", "nosuid", "noexec", "nodev", "relatime", "ro"),
            // /tmp stays on the overlay (disk), as in E2B's sandboxes: a tmpfs would charge files to the memory limit.
            Mount(AgentBundle.MountPoint, "bind", bundle.Directory, "rbind", "ro", "nosuid", "nodev"),
            Mount("/etc/hosts", "bind", layout.HostsFile, "rbind", "rw"),
            Mount("/etc/hostname", "bind", layout.HostnameFile, "rbind", "rw"));
        if (File.Exists(layout.ResolvConfFile))
        {
            // With egress on: the daemon's DNS forwarder as the only resolver (SandboxNetworks.ResolvConf).
            mounts.Add(Mount("/etc/resolv.conf", "bind", layout.ResolvConfFile, "rbind", "rw"));
        }
        foreach (var mount in VolumeMounts(spec, layout))
        {
            mounts.Add(mount);
        }
        return mounts;
    }

    /// <summary>
    /// The spec's volumes, bound by <see cref="SandboxFilesystem.BindMounts"/>, read-write, no devices or set-id
    /// programs. Last, so that none is hidden by a mount of the tier's. Shared by the gVisor tier's config.
    /// </summary>
    internal static IEnumerable<JsonObject> VolumeMounts(SandboxSpec spec, SandboxLayout layout) =>
        spec.Mounts.Select((m, i) => Mount(m.Path, "bind", layout.MountSource(i), "bind", "rw", "nosuid", "nodev"));

    private static JsonObject Mount(string destination, string type, string source, params string[] options) => new()
    {
        ["destination"] = destination,
        ["type"] = type,
        ["source"] = source,
        ["options"] = Strings(options),
    };

    private static JsonObject Mapping(IdMapping map) => new()
    {
        ["containerID"] = 0,
        ["hostID"] = map.HostBase,
        ["size"] = map.Size,
    };

    private static JsonArray Strings(IEnumerable<string> values) => new(values.Select(v => (JsonNode)JsonValue.Create(v)).ToArray());
}
