using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>
/// Netlink sockets (netlink(7)): socket(2), send(2) and recv(2) on an AF_NETLINK datagram socket. What is said over
/// it (rtnetlink messages) is Networking/RouteNetlink's concern.
/// </summary>
internal static unsafe partial class Netlink
{
    /// <summary>NETLINK_ROUTE from linux/netlink.h: links, addresses, routes (rtnetlink(7)).</summary>
    public const int NETLINK_ROUTE = 0;

    private const int AF_NETLINK = 16;
    private const int SOCK_RAW = 3;
    private const int SOCK_CLOEXEC = 0x80000;
    private const int SOL_SOCKET = 1;
    private const int SO_RCVTIMEO = 20;
    private const int SO_RCVBUFFORCE = 33;
    private const int SOL_NETLINK = 270;
    private const int NETLINK_ADD_MEMBERSHIP = 1;

    [StructLayout(LayoutKind.Sequential)]
    private struct TimeVal
    {
        public long Seconds;
        public long Microseconds;
    }

    /// <summary>
    /// A netlink socket of <paramref name="protocol"/> in the calling thread's network namespace (a socket keeps the
    /// namespace it was made in for life). A receive waits at most <paramref name="receiveTimeout"/>: rtnetlink answers
    /// a request while send(2) runs, so a longer wait means the answer is lost. Returns an invalid handle and the
    /// errno when none can be made.
    /// </summary>
    public static SafeNetlinkSocket Open(int protocol, TimeSpan receiveTimeout, out int errno)
    {
        var handle = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol);
        if (handle.IsInvalid)
        {
            errno = Marshal.GetLastPInvokeError();
            return handle;
        }
        var timeout = new TimeVal
        {
            Seconds = (long)receiveTimeout.TotalSeconds,
            Microseconds = receiveTimeout.Milliseconds * 1000L,
        };
        if (setsockopt(handle, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(TimeVal)) != 0)
        {
            errno = Marshal.GetLastPInvokeError();
            handle.Dispose();
            return new SafeNetlinkSocket();
        }
        errno = 0;
        return handle;
    }

    /// <summary>Sends one datagram to the kernel (the default destination of an unconnected netlink socket). Returns 0 or the errno.</summary>
    public static int Send(SafeNetlinkSocket socket, ReadOnlySpan<byte> datagram)
    {
        fixed (byte* p = datagram)
        {
            var sent = send(socket, p, (nuint)datagram.Length, 0);
            if (sent < 0)
            {
                return Marshal.GetLastPInvokeError();
            }
            // A netlink datagram goes whole or not at all.
            return sent == datagram.Length ? 0 : Errno.EINVAL;
        }
    }

    /// <summary>
    /// Receives one datagram into <paramref name="buffer"/>; returns its length, or -1 with the errno (EAGAIN: the
    /// receive timeout passed; EINTR: a signal came first).
    /// </summary>
    public static int Receive(SafeNetlinkSocket socket, Span<byte> buffer, out int errno)
    {
        fixed (byte* p = buffer)
        {
            var received = recv(socket, p, (nuint)buffer.Length, 0);
            errno = received < 0 ? Marshal.GetLastPInvokeError() : 0;
            return (int)received;
        }
    }

    /// <summary>Joins multicast group <paramref name="group"/> (1-based, as the kernel's NFNLGRP_* numbers). Returns 0 or the errno.</summary>
    public static int JoinGroup(SafeNetlinkSocket socket, int group) =>
        setsockopt(socket, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof(int)) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Sets the receive buffer to <paramref name="bytes"/> past the rmem_max limit (SO_RCVBUFFORCE, needs CAP_NET_ADMIN):
    /// a listener of kernel events that falls behind loses them (ENOBUFS) once the buffer is full. Returns 0 or the errno.
    /// </summary>
    public static int SetReceiveBuffer(SafeNetlinkSocket socket, int bytes) =>
        setsockopt(socket, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(int)) == 0 ? 0 : Marshal.GetLastPInvokeError();

    [LibraryImport("libc", SetLastError = true)]
    private static partial SafeNetlinkSocket socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setsockopt(SafeNetlinkSocket socket, int level, int name, void* value, int length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint send(SafeNetlinkSocket socket, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint recv(SafeNetlinkSocket socket, byte* buffer, nuint length, int flags);

    [LibraryImport("libc", SetLastError = true)]
    internal static partial int close(nint fd);
}

/// <summary>A netlink socket's descriptor, closed once.</summary>
internal sealed class SafeNetlinkSocket : SafeHandleZeroOrMinusOneIsInvalid
{
    public SafeNetlinkSocket()
        : base(ownsHandle: true)
    {
    }

    protected override bool ReleaseHandle() => Netlink.close(handle) == 0;
}
