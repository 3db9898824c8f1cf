using System.Text.RegularExpressions;

namespace Paddock.Security.Tests;

/// <summary>
/// One attack run from inside a sandbox: a Python script (ctypes for raw syscalls) that prints <c>BLOCKED errno</c>
/// when the kernel refuses and <c>ESCAPED</c> when a step that must fail succeeds. <see cref="Expect"/> is what the
/// output must match; <see cref="Setup"/>, when set, runs first as root (e.g. to make a set-user-ID file).
/// </summary>
internal sealed record Attack(string Name, string User, string Script, string Expect, string? Setup = null)
{
    /// <summary>
    /// What the output must match on the gVisor tier when the Sentry answers otherwise than Linux under runc (null:
    /// <see cref="Expect"/> on both). Each one set says why the different answer leaves the host as safe.
    /// </summary>
    public string? GvisorExpect { get; init; }

    /// <summary>
    /// Why the call succeeding on the gVisor tier is harmless (null: it must fail there too): it reached only the
    /// Sentry's own emulation of the object, never the host's, and the host check after every case
    /// (<see cref="BatteryFixture.AssertHostUnchangedAsync"/>) is what shows it.
    /// </summary>
    public string? GvisorHarmless { get; init; }

    /// <summary>What <paramref name="isolation"/> (the attacker's tier) must print.</summary>
    public string ExpectOn(string isolation) => isolation == "gvisor" && GvisorExpect is { } gvisor ? gvisor : Expect;

    /// <summary>Whether the output passes on <paramref name="isolation"/>.</summary>
    public bool Passes(string isolation, string stdout) =>
        (isolation == "gvisor" && GvisorHarmless is not null) || PrivilegeAttacks.Matches(ExpectOn(isolation), stdout);
}

/// <summary>The attacks of issue 5, item 3, by name (x86-64 syscall numbers).</summary>
internal static class PrivilegeAttacks
{
    /// <summary>Helpers every script starts with: <c>call(nr, ...)</c> prints the verdict of one raw syscall.</summary>
    public const string Prelude = """
        import ctypes, errno, os, socket, sys
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        def sc(nr, *args):
            ctypes.set_errno(0)
            r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
            return r, ctypes.get_errno()
        def name(e):
            return errno.errorcode.get(e, str(e))
        def verdict(r, e):
            print("ESCAPED" if r != -1 else "BLOCKED " + name(e))
        def call(nr, *args):
            verdict(*sc(nr, *args))
        def oserror(f):
            try:
                f()
                print("ESCAPED")
            except OSError as ex:
                print("BLOCKED " + name(ex.errno))
        buf = ctypes.create_string_buffer(4096)
        s = ctypes.c_char_p

        """;

    private static Attack Root(string name, string script, string expect = "^BLOCKED EPERM$") => new(name, "root", script, expect);

    private static Attack User(string name, string script, string expect = "^BLOCKED EPERM$") => new(name, "user", script, expect);

    /// <summary>
    /// Every attack. Scripts name the run's values as placeholders ({DAEMON_PID}, {DAEMON_PORT}, {CANARY_DIR},
    /// {CANARY_FILE}, {ABSTRACT}, {NEIGHBOUR_PORT}), so that the list exists before the daemon does (test names).
    /// </summary>
    public static IReadOnlyList<Attack> All { get; } =
    [
        // Mounts and namespaces: no CAP_SYS_ADMIN, and seccomp refuses the calls outright.
        Root("mount a tmpfs", """call(165, s(b"none"), s(b"/mnt"), s(b"tmpfs"), 0, 0)"""),
        Root("bind-mount / elsewhere (MS_BIND|MS_REC)", """call(165, s(b"/"), s(b"/mnt"), None, 0x5000, 0)"""),
        Root("unmount /proc to uncover what it masks", """call(166, s(b"/proc/kcore"), 2)"""),
        Root("pivot_root", """call(155, s(b"/tmp"), s(b"/tmp"))"""),
        // gVisor: the Sentry has no new mount API (ENOSYS); nothing reaches the host kernel.
        Root("new mount API: fsopen", """call(430, s(b"tmpfs"), 0)""") with { GvisorExpect = "^BLOCKED (EPERM|ENOSYS)$" },
        // gVisor: the Sentry has no new mount API (ENOSYS); nothing reaches the host kernel.
        Root("new mount API: open_tree of /", """call(428, -100, s(b"/"), 1)""") with { GvisorExpect = "^BLOCKED (EPERM|ENOSYS)$" },
        Root("unshare a user namespace", "call(272, 0x10000000)") with { GvisorHarmless = "a user namespace of the Sentry" },
        Root("unshare a mount namespace", "call(272, 0x00020000)"),
        Root("unshare a network namespace", "call(272, 0x40000000)"),
        Root("clone(2) with CLONE_NEWUSER|CLONE_NEWNS", """
            r, e = sc(56, 0x10020000 | 17, 0, 0, 0, 0)
            if r == 0:
                os._exit(0)
            verdict(r, e)
            """) with { GvisorHarmless = "namespaces of the Sentry" },
        Root("clone3(2) (flags a filter cannot see)", "call(435, buf, 88)", "^BLOCKED ENOSYS$") with { GvisorHarmless = "a Sentry task: no host seccomp filter stands between the sandbox and the Sentry" },
        Root("setns into a mount namespace", """
            # The agent's own /proc/1/ns is out of reach (it is not dumpable); a namespace file of the sandbox's
            # own processes is the one an attacker has, and setns(2) must be refused whatever the file.
            fd = os.open("/proc/self/ns/mnt", os.O_RDONLY)
            call(308, fd, 0)
            """),
        Root("unshare(1) command", """
            import subprocess
            r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
            print("ESCAPED" if r.returncode == 0 else "BLOCKED EPERM")
            """) with { GvisorHarmless = "namespaces of the Sentry" },
        // Other processes.
        Root("ptrace PTRACE_ATTACH of the daemon's host pid", "call(101, 16, {DAEMON_PID}, 0, 0)", "^BLOCKED (ESRCH|EPERM)$"),
        User("ptrace PTRACE_ATTACH of the agent (pid 1) as user", "call(101, 16, 1, 0, 0)"),
        User("process_vm_readv of the agent (pid 1) as user", """
            class iovec(ctypes.Structure):
                _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
            local = iovec(ctypes.cast(buf, ctypes.c_void_p), 16)
            remote = iovec(0x400000, 16)
            call(310, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
            """, "^BLOCKED (EPERM|ESRCH)$"),
        User("kill the agent (pid 1) as user", "oserror(lambda: os.kill(1, 9))"),
        // The kernel itself.
        Root("init_module", """call(175, buf, 4096, s(b""))"""),
        Root("finit_module", """
            fd = os.open("/bin/true", os.O_RDONLY)
            call(313, fd, s(b""), 0)
            """),
        Root("delete_module", """call(176, s(b"overlay"), 0x800)"""),
        Root("kexec_load", "call(246, 0, 0, 0, 0)"),
        Root("reboot (LINUX_REBOOT_CMD_CAD_OFF, harmless if it passed)", "call(169, 0xfee1dead, 672274793, 0, 0)"),
        Root("bpf BPF_PROG_LOAD", "call(321, 5, buf, 128)"),
        User("bpf BPF_MAP_CREATE as user", "call(321, 0, buf, 72)"),
        Root("perf_event_open", """
            ctypes.memmove(buf, (1).to_bytes(4, "little") + (128).to_bytes(4, "little"), 8)
            call(298, buf, 0, -1, -1, 0)
            """) with { GvisorExpect = "^BLOCKED (EPERM|ENODEV)$" }, // gVisor: the Sentry has no perf events (ENODEV)
        Root("keyctl join session keyring", "call(250, 1, 0)") with { GvisorHarmless = "a keyring of the Sentry" },
        // gVisor: the Sentry's keyrings refuse with EACCES; the host's keyrings are never reached.
        Root("add_key", """call(248, s(b"user"), s(b"paddock"), s(b"secret"), 6, -3)""") with { GvisorExpect = "^BLOCKED (EPERM|EACCES)$" },
        // gVisor: the Sentry's keyrings refuse (EACCES); nothing reaches the host kernel.
        Root("request_key", """call(249, s(b"user"), s(b"paddock"), 0, 0)""") with { GvisorExpect = "^BLOCKED (EPERM|EACCES)$" },
        // gVisor: not implemented by the Sentry (ENOSYS); nothing reaches the host kernel.
        Root("userfaultfd", "call(323, 0)") with { GvisorExpect = "^BLOCKED (EPERM|ENOSYS)$" },
        Root("open_by_handle_at (the 'shocker' escape)", """
            fd = os.open("/", os.O_RDONLY)
            ctypes.memmove(buf, (8).to_bytes(4, "little") + (1).to_bytes(4, "little") + (2).to_bytes(8, "little"), 16)
            call(304, fd, buf, 0)
            """) with { GvisorExpect = "^BLOCKED (EPERM|ENOTSUP)$" }, // gVisor: not supported by the Sentry (ENOTSUP)
        Root("iopl(3)", "call(172, 3)"),
        Root("swapon", """call(167, s(b"/tmp/swap"), 0)"""),
        Root("syslog (dmesg)", "call(103, 3, buf, 4096)") with { GvisorHarmless = "the Sentry's own boot messages, not the host's kernel log" },
        Root("clock_settime", """
            ctypes.memmove(buf, (1).to_bytes(8, "little") + (0).to_bytes(8, "little"), 16)
            call(227, 0, buf)
            """),
        // Devices and set-user-ID programs.
        Root("mknod of a block device (sda)", """oserror(lambda: os.mknod("/tmp/sda", 0o60600, os.makedev(8, 0)))"""),
        Root("mknod of /dev/mem", """oserror(lambda: os.mknod("/tmp/mem", 0o20600, os.makedev(1, 1)))"""),
        // Set-user-ID programs and sudo make the default user the sandbox's root (no_new_privs is off by default since
        // issue 18, as E2B's user can sudo): that root must be the same confined root as every other.
        new Attack("a set-user-ID root unshare run by user", "user", """
            import subprocess
            r = subprocess.run(["/tmp/suid-unshare", "--mount", "--user", "true"], capture_output=True, text=True)
            print("ESCAPED" if r.returncode == 0 else "BLOCKED unshare")
            """, "^BLOCKED unshare$", Setup: "cp /usr/bin/unshare /tmp/suid-unshare && chmod 4755 /tmp/suid-unshare && stat -c %a /tmp/suid-unshare")
        {
            // Measured on gVisor: the unshare succeeds. The user and mount namespaces it makes are the Sentry's,
            // inside the sandbox's kernel; no host namespace is made or entered.
            GvisorHarmless = "namespaces made inside the Sentry",
        },
        User("sudo as user gives a root that still cannot mount", """
            import subprocess
            uid = subprocess.run(["sudo", "-n", "id", "-u"], capture_output=True, text=True).stdout.strip()
            m = subprocess.run(["sudo", "-n", "mount", "-t", "tmpfs", "none", "/mnt"], capture_output=True, text=True)
            print("ESCAPED" if m.returncode == 0 else "BLOCKED mount as uid " + uid)
            """, "^BLOCKED mount as uid 0$") with { GvisorExpect = "^BLOCKED mount as uid$" }, // gVisor: sudo itself is refused (no_new_privs, SECURITY.md)
        // /proc and /sys.
        Root("write /proc/sys/kernel/core_pattern", """oserror(lambda: open("/proc/sys/kernel/core_pattern", "w").write("|/tmp/x"))""", "^BLOCKED (EROFS|EACCES|EPERM)$"),
        Root("write /proc/sys/vm/drop_caches", """oserror(lambda: open("/proc/sys/vm/drop_caches", "w").write("3"))""", "^BLOCKED (EROFS|EACCES|EPERM)$"),
        Root("write /proc/sys/kernel/hostname", """oserror(lambda: open("/proc/sys/kernel/hostname", "w").write("owned"))""", "^BLOCKED (EROFS|EACCES|EPERM)$") with { GvisorHarmless = "the sandbox's hostname in the Sentry; the host's kernel/hostname is in the host check" },
        // ENOENT: a kernel without CONFIG_MAGIC_SYSRQ (this VM's) has no such file; there is nothing to write then.
        Root("write /proc/sysrq-trigger", """oserror(lambda: open("/proc/sysrq-trigger", "w").write("h"))""", "^BLOCKED (EROFS|EACCES|EPERM|ENOENT)$") with
        {
            // Measured on gVisor: the write succeeds; it is the Sentry's own /proc, which ignores it.
            GvisorHarmless = "the Sentry's /proc/sysrq-trigger",
        },
        Root("write /sys/kernel/uevent_helper", """oserror(lambda: open("/sys/kernel/uevent_helper", "w").write("/tmp/x"))""", "^BLOCKED (EROFS|EACCES|EPERM|ENOENT)$"),
        // gVisor: the Sentry's /sys has no cgroup files (ENOENT); the limits are on the Sentry's host cgroup.
        Root("raise the sandbox's own memory limit in /sys/fs/cgroup", """oserror(lambda: open("/sys/fs/cgroup/memory/memory.limit_in_bytes", "w").write("-1"))""", "^BLOCKED (EROFS|EACCES|EPERM)$") with { GvisorExpect = "^BLOCKED (EROFS|EACCES|EPERM|ENOENT)$" },
        Root("read /proc/kcore", """oserror(lambda: open("/proc/kcore", "rb").read(16) or (_ for _ in ()).throw(OSError(61, "empty")))""", "^BLOCKED (EACCES|EPERM|ENODATA|EROFS|ENOENT)$"),
        // Runtime escapes.
        // gVisor: the Sentry has no ETXTBSY, so root opens the attacking python's own /proc/self/exe for writing. Measured
        // (2026-12-06): that is /usr/bin/python3.11 of the sandbox's rootfs; the open copied it up into the sandbox's own
        // writable layer (disk/upper/usr/bin/python3.11 on its disk image), the template's lower layer is untouched,
        // and root inside may rewrite its own /usr/bin anyway. The agent's /proc/1/exe is refused (EACCES), the agent
        // bundle is read-only (EROFS), and no host binary is reachable: runsc and the agent binary are in the host check.
        Root("overwrite the runtime through /proc/PID/exe (CVE-2019-5736)", """
            results = set()
            opened = set()
            for pid in [p for p in os.listdir("/proc") if p.isdigit()]:
                try:
                    fd = os.open(f"/proc/{pid}/exe", os.O_WRONLY)
                    os.close(fd)
                    opened.add(os.readlink(f"/proc/{pid}/exe"))
                except OSError as ex:
                    results.add(name(ex.errno))
            try:
                fd = os.open("/.paddock/paddock-agent", os.O_WRONLY)
                opened.add("/.paddock/paddock-agent")
            except OSError as ex:
                results.add(name(ex.errno))
            print("OPENED " + ",".join(sorted(opened)) if opened else "BLOCKED " + ",".join(sorted(results)))
            """, "^BLOCKED (ETXTBSY|EROFS|EACCES|ENOENT)(,(ETXTBSY|EROFS|EACCES|ENOENT))*$") with { GvisorExpect = "^OPENED /usr/bin/python3\\.[0-9]+$" },
        Root("host directories through pid 1's fds, cwd and root (CVE-2024-21626)", """
            seen = []
            try:
                fds = os.listdir("/proc/1/fd")
            except PermissionError:
                fds = []  # the agent is not dumpable: its descriptors are out of reach (see AgentBundle.RestrictLoader)
            for fd in fds:
                p = f"/proc/1/fd/{fd}"
                if os.path.isdir(p):
                    # A directory fd of the host would show the host's tree above it.
                    if os.path.exists(p + "/../../../../../..{CANARY_DIR}"):
                        print("ESCAPED fd " + fd + " -> " + os.readlink(p))
                seen.append(fd + "=" + os.readlink(p))
            for link in ("/proc/1/cwd", "/proc/1/root", "/proc/self/root"):
                try:
                    target = os.readlink(link)
                except PermissionError:
                    continue  # the agent's links are out of reach (it is not dumpable)
                if os.path.exists(link + "{CANARY_DIR}") or target != "/":
                    print("ESCAPED " + link + " -> " + target)
            for link in ("/proc/self/cwd", "/proc/self/cwd/../../../../.."):
                if os.path.exists(link + "{CANARY_DIR}"):
                    print("ESCAPED " + link + " -> " + os.readlink(link))
            print("BLOCKED contained", file=sys.stdout)
            print(" ".join(seen), file=sys.stderr)
            """, "^BLOCKED contained$"),
        // The agent's stdout and stderr are a host file (runc hands the container its own stdio; RuncCli points them
        // at the sandbox's agent.log). Reopening it through /proc/1/fd needs write permission on a file whose owner
        // (host root) is not mapped in the sandbox's user namespace: DAC_OVERRIDE does not apply.
        // On gVisor the Sentry lets root reopen the agent's stdout, but that is a FIFO the daemon drains into agent.log
        // with a byte bound (AgentLogDrain), no host file: AgentLogTests floods it and checks the host's files stay bounded.
        Root("append to the host's agent log through /proc/1/fd/1", """oserror(lambda: open("/proc/1/fd/1", "a").write("x"))""", "^BLOCKED (EACCES|EPERM)$")
            with { GvisorHarmless = "the agent's output FIFO, drained into agent.log with a byte bound (AgentLogTests)" },
        Root("ptrace the agent (pid 1) as root, to write through its host descriptors", """
            r, e = sc(101, 16, 1, 0, 0)
            if r == 0:
                # Attached: let the agent go again (PTRACE_DETACH with SIGCONT) so that the rest of the run can work.
                os.waitpid(1, 0x40000000)
                sc(101, 17, 1, 0, 18)
            verdict(r, e)
            """),
        User("a command inherits no descriptor but stdio", """
            fds = sorted(int(x) for x in os.listdir("/proc/self/fd"))
            extra = [f"{x}={os.readlink(f'/proc/self/fd/{x}')}" for x in fds if x > 2 and os.path.exists(f"/proc/self/fd/{x}") and not os.path.isdir(f"/proc/self/fd/{x}")]
            print("ESCAPED " + " ".join(extra) if extra else "BLOCKED none")
            """, "^BLOCKED none$"),
        // gVisor: the climb passes the container's root and ends in the mount namespace's own root in the Sentry
        // (measured 2026-12-06: the root mount's parent, mount 15 at 0:16, not in the sandbox's mountinfo; empty, and
        // creating a file there fails with EROFS). A Sentry object with nothing in it, not a directory of the host.
        Root("chroot and climb out (the classic chroot breakout)", """
            os.makedirs("/tmp/jail", exist_ok=True)
            keep = os.open("/", os.O_RDONLY)
            os.chroot("/tmp/jail")
            os.fchdir(keep)
            for _ in range(64):
                os.chdir("..")
            os.chroot(".")
            if os.path.exists("{CANARY_FILE}"):
                print("ESCAPED")
            elif os.path.exists("/etc/hostname"):
                print("BLOCKED " + open("/etc/hostname").read().strip())
            else:
                entries = os.listdir("/")
                try:
                    open("/paddock-probe", "w").close()
                    writable = "writable"
                except OSError as ex:
                    writable = name(ex.errno)
                print("BLOCKED above the root: " + (",".join(sorted(entries)) or "empty") + ", " + writable)
            """, "^BLOCKED sandbox$") with { GvisorExpect = "^BLOCKED above the root: empty, EROFS$" },
        // The network: the sandbox's loopback is its own.
        Root("reach the daemon on host 127.0.0.1", """oserror(lambda: socket.create_connection(("127.0.0.1", {DAEMON_PORT}), 2))""", "^BLOCKED ECONNREFUSED$"),
        Root("reach the neighbour sandbox's server on 127.0.0.1", """oserror(lambda: socket.create_connection(("127.0.0.1", {NEIGHBOUR_PORT}), 2))""", "^BLOCKED ECONNREFUSED$"),
        Root("reach a host abstract unix socket", """
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            oserror(lambda: u.connect("\0{ABSTRACT}"))
            """, "^BLOCKED ECONNREFUSED$"),
        // gVisor: netstack refuses with EACCES (Linux's own answer for a missing CAP_NET_RAW is EPERM).
        User("a raw socket as user", "oserror(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))") with { GvisorExpect = "^BLOCKED (EPERM|EACCES)$" },
        User("a packet socket as user", "oserror(lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))"),
        // The sandbox's namespace has its loopback and, with a network policy (Networking/), its own eth0 (the
        // sandbox end of its veth pair); never the host's interfaces or other sandboxes' veth ends.
        // gVisor: runsc gives the sandbox no raw sockets at all (no --net-raw), even as root: EPERM.
        Root("raw sockets as root see only the sandbox's own interfaces", """
            try:
                r = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            except PermissionError:
                print("BLOCKED EPERM")
                sys.exit(0)
            names = sorted(n for _, n in socket.if_nameindex())
            print("BLOCKED interfaces=" + ",".join(names) if set(names) <= {"lo", "eth0"} else "ESCAPED " + ",".join(names))
            """, "^BLOCKED interfaces=(eth0,)?lo$") with { GvisorExpect = "^BLOCKED EPERM$" },
        Root("AF_VSOCK to the hypervisor host", "oserror(lambda: socket.socket(40, socket.SOCK_STREAM, 0))", "^BLOCKED (EPERM|EAFNOSUPPORT)$"),
    ];

    public static bool Matches(string expect, string stdout) =>
        !stdout.Contains("ESCAPED", StringComparison.Ordinal)
        && stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Any(l => Regex.IsMatch(l.Trim(), expect));
}
