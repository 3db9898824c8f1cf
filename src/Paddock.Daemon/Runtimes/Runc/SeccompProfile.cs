using System.Runtime.InteropServices;
using System.Text.Json.Nodes;

namespace Paddock.Daemon.Runtimes.Runc;

/// <summary>
/// The seccomp filter of every sandbox, in the OCI runtime-spec form runc reads: an allowlist that is Docker's
/// default profile (moby, profiles/seccomp/default.json) applied to the capability set the sandbox gets
/// (<see cref="OciConfig.Capabilities"/>). Everything not listed fails with EPERM. Rules that Docker grants only
/// with a capability the sandbox lacks (CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_SYS_MODULE, ...) are left out, and for
/// the missing CAP_SYS_ADMIN: clone(2) without any namespace flag only, and clone3(2) answering ENOSYS so that
/// libcs fall back to clone(2), whose flags a filter can see.
/// Names that the host's libseccomp does not know are skipped by runc, so the list can name newer calls. Unlike
/// Docker's, the filter admits the native architecture only (no 32-bit system calls; see <see cref="Build"/>).
/// </summary>
internal static class SeccompProfile
{
    private const int EPERM = 1;
    private const int ENOSYS = 38;
    private const ulong AF_VSOCK = 40;

    /// <summary>
    /// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET:
    /// clone(2) is allowed only when none of these bits is set (Docker's rule without CAP_SYS_ADMIN).
    /// </summary>
    private const ulong NamespaceCloneFlags = 0x7E020000;

    /// <summary>Calls allowed unconditionally (Docker's default allowlist).</summary>
    internal static readonly string[] AllowedSyscalls =
    [
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
        "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
        "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
        "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
        "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve",
        "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
        "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64",
        "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64",
        "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_time64",
        "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
        "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp",
        "getpid", "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
        "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid",
        "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1",
        "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
        "ioprio_get", "ioprio_set", "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup",
        "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
        "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
        "lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
        "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
        "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64",
        "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
        "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
        "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll",
        "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
        "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
        "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename",
        "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
        "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
        "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
        "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64",
        "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
        "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
        "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
        "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat", "shmctl",
        "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall",
        "socketpair", "splice", "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
        "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create", "timer_delete",
        "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
        "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
        "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
        "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    ];

    /// <summary>
    /// Names of <see cref="AllowedSyscalls"/> that x86-64 does not have (32-bit and time64 variants, socketcall and
    /// its kind; libseccomp 2.5.4 resolves none of them for SCMP_ARCH_X86_64). With the native architecture only in
    /// the filter they match nothing, but runc init still looks each one up and adds a rule for it at every start:
    /// left out on x86-64 they saved ~7 ms of CPU per start here (135.2 against 142.7 ms, 20 runc runs each,
    /// alternating, load 8; issue 6).
    /// </summary>
    internal static readonly IReadOnlySet<string> NotOnX64 = new HashSet<string>(StringComparer.Ordinal)
    {
        "chown32", "clock_adjtime64", "clock_getres_time64", "clock_gettime64", "clock_nanosleep_time64",
        "fadvise64_64", "fchown32", "fcntl64", "fstat64", "fstatat64", "fstatfs64", "ftruncate64", "futex_time64",
        "getegid32", "geteuid32", "getgid32", "getgroups32", "getresgid32", "getresuid32", "getuid32",
        "io_pgetevents_time64", "ipc", "lchown32", "_llseek", "lstat64", "mmap2", "mq_timedreceive_time64",
        "mq_timedsend_time64", "_newselect", "ppoll_time64", "pselect6_time64", "recv", "recvmmsg_time64",
        "rt_sigtimedwait_time64", "sched_rr_get_interval_time64", "semtimedop_time64", "send", "sendfile64",
        "setfsgid32", "setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32", "setresuid32",
        "setreuid32", "setuid32", "sigprocmask", "sigreturn", "socketcall", "stat64", "statfs64", "timer_gettime64",
        "timer_settime64", "timerfd_gettime64", "timerfd_settime64", "truncate64", "ugetrlimit", "utimensat_time64",
        "waitpid",
    };

    /// <summary>The profile for a sandbox whose processes hold at most <paramref name="capabilities"/>.</summary>
    public static JsonObject Build(IReadOnlySet<string> capabilities)
    {
        var x64 = RuntimeInformation.ProcessArchitecture == Architecture.X64;
        var rules = new JsonArray
        {
            Allow(x64 ? AllowedSyscalls.Where(n => !NotOnX64.Contains(n)).ToArray() : AllowedSyscalls),
            // Docker allows these from kernel 4.8 on, where ptrace can no longer bypass seccomp.
            Allow("process_vm_readv", "process_vm_writev", "ptrace"),
            // socket(2) for every family but AF_VSOCK, which reaches the hypervisor's host side.
            Allow(["socket"], Arg(0, "SCMP_CMP_NE", AF_VSOCK)),
        };
        // personality(2) only with the values programs commonly ask for: PER_LINUX, PER_LINUX32, UNAME26,
        // UNAME26|PER_LINUX32, and 0xffffffff (query).
        foreach (var persona in (ulong[])[0x0, 0x8, 0x20000, 0x20008, 0xffffffff])
        {
            rules.Add(Allow(["personality"], Arg(0, "SCMP_CMP_EQ", persona)));
        }
        if (x64)
        {
            rules.Add(Allow("arch_prctl", "modify_ldt"));
        }
        else
        {
            rules.Add(Allow("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"));
        }
        if (capabilities.Contains("CAP_SYS_CHROOT"))
        {
            rules.Add(Allow("chroot"));
        }
        if (!capabilities.Contains("CAP_SYS_ADMIN"))
        {
            rules.Add(Allow(["clone"], Arg(0, "SCMP_CMP_MASKED_EQ", NamespaceCloneFlags, 0)));
            rules.Add(new JsonObject
            {
                ["names"] = new JsonArray("clone3"),
                ["action"] = "SCMP_ACT_ERRNO",
                ["errnoRet"] = ENOSYS,
            });
        }
        else
        {
            throw new NotSupportedException("a sandbox with CAP_SYS_ADMIN would need Docker's CAP_SYS_ADMIN rules, which this profile does not carry");
        }

        return new JsonObject
        {
            ["defaultAction"] = "SCMP_ACT_ERRNO",
            ["defaultErrnoRet"] = EPERM,
            // The native ABI only. Docker also lists the 32-bit ones (x86 and x32, or arm), which lets a sandbox reach
            // the kernel's compat system-call entry; without them a 32-bit system call matches no architecture of
            // the filter and is refused (libseccomp's bad-architecture action), so 32-bit programs cannot run in a
            // sandbox. Each listed architecture is compiled by runc init in every start: measured here (20 runc
            // runs of /bin/true per variant, alternating, issue 6) the three x86 ones cost 141.9 ms of CPU per run
            // against 130.9 ms for x86-64 alone and 117.2 ms with no filter.
            ["architectures"] = x64 ? new JsonArray("SCMP_ARCH_X86_64") : new JsonArray("SCMP_ARCH_AARCH64"),
            ["syscalls"] = rules,
        };
    }

    private static JsonObject Allow(params string[] names) => Allow(names, null);

    private static JsonObject Allow(string[] names, JsonObject? arg)
    {
        var rule = new JsonObject
        {
            ["names"] = new JsonArray(names.Select(n => (JsonNode)JsonValue.Create(n)).ToArray()),
            ["action"] = "SCMP_ACT_ALLOW",
        };
        if (arg is not null)
        {
            rule["args"] = new JsonArray(arg);
        }
        return rule;
    }

    /// <summary>
    /// A condition on argument <paramref name="index"/>. For SCMP_CMP_MASKED_EQ, <paramref name="value"/> is the mask
    /// and <paramref name="valueTwo"/> what the masked argument must equal (libseccomp's order).
    /// </summary>
    private static JsonObject Arg(int index, string op, ulong value, ulong valueTwo = 0) => new()
    {
        ["index"] = index,
        ["value"] = value,
        ["valueTwo"] = valueTwo,
        ["op"] = op,
    };
}
