using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Paddock.Daemon.Native;

/// <summary>Network interface flags through ioctl(2) on a datagram socket (SIOCGIFFLAGS/SIOCSIFFLAGS, netdevice(7)).</summary>
internal static unsafe partial class Interfaces
{
    private const int AF_INET = 2;
    private const int SOCK_DGRAM = 2;
    private const int SOCK_CLOEXEC = 0x80000;
    private const ulong SIOCGIFFLAGS = 0x8913;
    private const ulong SIOCSIFFLAGS = 0x8914;
    private const short IFF_UP = 0x1;

    // struct ifreq (net/if.h): char ifr_name[IFNAMSIZ = 16], then a union of 24 bytes whose first member here is
    // short ifr_flags.
    private const int IfreqSize = 40;
    private const int NameSize = 16;

    /// <summary>
    /// Sets interface <paramref name="name"/> of the calling thread's network namespace up (as <c>ip link set NAME
    /// up</c>). Returns 0, or the errno of the call that failed (ENODEV: no such interface).
    /// </summary>
    public static int SetUp(string name)
    {
        var bytes = System.Text.Encoding.ASCII.GetBytes(name);
        if (bytes.Length >= NameSize)
        {
            throw new ArgumentException($"interface name '{name}' is longer than {NameSize - 1} bytes", nameof(name));
        }
        using var socket = Socket();
        if (socket.IsInvalid)
        {
            return Marshal.GetLastPInvokeError();
        }
        var request = stackalloc byte[IfreqSize];
        new Span<byte>(request, IfreqSize).Clear();
        bytes.CopyTo(new Span<byte>(request, NameSize));
        if (ioctl(socket, SIOCGIFFLAGS, request) != 0)
        {
            return Marshal.GetLastPInvokeError();
        }
        var flags = (short*)(request + NameSize);
        if ((*flags & IFF_UP) != 0)
        {
            return 0;
        }
        *flags |= IFF_UP;
        return ioctl(socket, SIOCSIFFLAGS, request) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    private static SafeFileHandle Socket() => new(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ownsHandle: true);

    [LibraryImport("libc", SetLastError = true)]
    private static partial nint socket(int domain, int type, int protocol);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(SafeFileHandle fd, ulong request, byte* argument);
}
