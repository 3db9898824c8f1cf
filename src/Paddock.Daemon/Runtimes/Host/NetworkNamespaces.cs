using System.Net.Sockets;
using Microsoft.Win32.SafeHandles;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Each sandbox's network namespace, held by a bind mount of its nsfs file on <see cref="SandboxLayout.NetnsFile"/>
/// so that it outlives any one process and can be entered by path, and sockets made inside it.
/// </summary>
/// <remarks>
/// runc creates the namespace (an empty "network" entry in config.json) with the container, and the daemon binds it
/// as soon as <c>runc run --detach</c> returns. The daemon does not create it itself: a namespace made by the
/// daemon belongs to the host's user namespace, and then the sandbox's root (in the sandbox's own user namespace)
/// may not mount sysfs (sysfs checks CAP_SYS_ADMIN over the network namespace's owner), which runc 1.1.5 treats as
/// fatal ("mount sysfs:/sys: operation not permitted", measured here). Owned by the sandbox's user namespace, it is
/// what Docker gives a container, and runc brings its loopback up.
/// </remarks>
internal sealed class NetworkNamespaces : IDisposable
{
    // The daemon's own network namespace, to return to after making a socket inside a sandbox's.
    private readonly SafeFileHandle _home;

    public NetworkNamespaces()
    {
        _home = Namespaces.Open("/proc/self/ns/net", out var errno);
        if (_home.IsInvalid)
        {
            throw Errno.Exception("open", "/proc/self/ns/net", errno);
        }
    }

    /// <summary>Binds the network namespace of process <paramref name="pid"/> on <paramref name="file"/>.</summary>
    public static void Bind(int pid, string file)
    {
        using (File.Create(file))
        {
            // an empty file is the mount point of a namespace bind mount, as iproute2 does it
        }
        var source = $"/proc/{pid}/ns/net";
        var errno = Mounts.Mount(source, file, null, Mounts.MS_BIND, null);
        if (errno != 0)
        {
            throw Errno.Exception($"mount --bind {source}", file, errno);
        }
    }

    /// <summary>
    /// Makes a new network namespace and binds it on <paramref name="file"/>, for a tier whose OCI runtime joins a
    /// namespace given by path (runsc) instead of making one. The namespace belongs to the host's user namespace.
    /// The calling thread unshares, binds and returns to the daemon's namespace at once, synchronously, as in
    /// <see cref="CreateTcpSocket"/>. Its loopback interface is up.
    /// </summary>
    public void Create(string file)
    {
        using (File.Create(file))
        {
            // the mount point of the namespace's bind mount, as iproute2 does it
        }
        var errno = Namespaces.Unshare(Namespaces.CloneNewNet);
        if (errno != 0)
        {
            throw Errno.Exception("unshare(CLONE_NEWNET) for", file, errno);
        }
        try
        {
            // thread-self: the namespace is this thread's alone, the daemon's other threads stay in the host's.
            const string source = "/proc/thread-self/ns/net";
            errno = Mounts.Mount(source, file, null, Mounts.MS_BIND, null);
            if (errno != 0)
            {
                throw Errno.Exception($"mount --bind {source}", file, errno);
            }
            // A new namespace's loopback is down, and runsc copies into netstack only the interfaces that are up:
            // without this a gVisor sandbox had no 127.0.0.1 at all (measured: bind to 127.0.0.1 failed with
            // EADDRNOTAVAIL, so `python3 -m http.server --bind 127.0.0.1` and the code interpreter's kernels,
            // which talk ZeroMQ over loopback, never came up). runc brings it up itself for the namespaces it makes.
            errno = Interfaces.SetUp("lo");
            if (errno != 0)
            {
                throw Errno.Exception("set up the loopback interface of", file, errno);
            }
        }
        finally
        {
            var back = Namespaces.SetNs(_home, Namespaces.CloneNewNet);
            if (back != 0)
            {
                Environment.FailFast($"paddockd: cannot return to the daemon's network namespace after making {file}: {Errno.Describe(back)}");
            }
        }
    }

    /// <summary>Unbinds and removes <paramref name="file"/>; a file that is not mounted or not there is fine.</summary>
    public static void Release(string file)
    {
        // Detach: a proxy connection may still hold a socket of the namespace; the namespace goes when it closes.
        var errno = Mounts.Unmount(file, Mounts.MNT_DETACH | Mounts.UMOUNT_NOFOLLOW);
        if (errno is not (0 or Errno.EINVAL or Errno.ENOENT))
        {
            throw Errno.Exception("umount", file, errno);
        }
        File.Delete(file);
    }

    /// <summary>
    /// A TCP socket that lives in the sandbox's network namespace. A socket keeps the namespace it was made in for
    /// life, so only socket(2) has to run inside: the calling thread enters the namespace, makes the socket and
    /// returns at once, synchronously, so no other work ever runs on the thread while it is inside.
    /// Throws <see cref="SandboxNotFoundException"/> when the namespace file is missing or no longer bound.
    /// </summary>
    public Socket CreateTcpSocket(string sandboxId, string netnsFile)
    {
        using var ns = Namespaces.Open(netnsFile, out var openErrno);
        if (ns.IsInvalid)
        {
            throw openErrno == Errno.ENOENT ? new SandboxNotFoundException(sandboxId) : Errno.Exception("open", netnsFile, openErrno);
        }
        var errno = Namespaces.SetNs(ns, Namespaces.CloneNewNet);
        if (errno != 0)
        {
            // EINVAL: the file is not a network namespace any more (its bind mount is gone with the sandbox).
            throw errno == Errno.EINVAL ? new SandboxNotFoundException(sandboxId) : Errno.Exception("setns", netnsFile, errno);
        }
        try
        {
            return new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        }
        finally
        {
            var back = Namespaces.SetNs(_home, Namespaces.CloneNewNet);
            if (back != 0)
            {
                // A thread-pool thread left in a sandbox's namespace would put unrelated host traffic in the sandbox.
                Environment.FailFast($"paddockd: cannot return to the daemon's network namespace after entering {netnsFile}: {Errno.Describe(back)}");
            }
        }
    }

    public void Dispose() => _home.Dispose();
}
