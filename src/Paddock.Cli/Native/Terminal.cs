using System.Runtime.InteropServices;

namespace Paddock.Cli.Native;

/// <summary>
/// The controlling terminal: raw mode and window size, through libc (termios(3), ioctl_tty(2)). The only place
/// the CLI touches terminal settings.
/// </summary>
internal static partial class Terminal
{
    private const int StdinFd = 0;
    private const int StdoutFd = 1;
    private const int TCSANOW = 0;
    private const ulong TIOCGWINSZ = 0x5413;

    // struct termios is 60 bytes on Linux (glibc and musl); a larger opaque buffer is safe for both calls.
    private const int TermiosBufferSize = 128;

    public static bool IsTerminal(int fd) => isatty(fd) == 1;

    /// <summary>The window size of the terminal on stdout (else stdin); null when neither is a terminal.</summary>
    public static (int Cols, int Rows)? WindowSize()
    {
        foreach (var fd in new[] { StdoutFd, StdinFd })
        {
            if (ioctl(fd, TIOCGWINSZ, out var size) == 0 && size.Cols > 0 && size.Rows > 0)
            {
                return (size.Cols, size.Rows);
            }
        }
        return null;
    }

    /// <summary>
    /// Puts stdin's terminal into raw mode (no echo, no line editing, no signals from ^C/^Z: those bytes go to the
    /// sandbox) until the returned object is disposed. Null when stdin is not a terminal.
    /// </summary>
    public static RawMode? EnterRawMode()
    {
        if (!IsTerminal(StdinFd))
        {
            return null;
        }
        var saved = new byte[TermiosBufferSize];
        // tcgetattr: 0 on success, -1 with errno (EBADF, ENOTTY) on failure.
        if (tcgetattr(StdinFd, saved) != 0)
        {
            throw new IOException($"tcgetattr failed (errno {Marshal.GetLastPInvokeError()})");
        }
        var raw = (byte[])saved.Clone();
        cfmakeraw(raw);
        // tcsetattr: 0 on success (some changes applied), -1 with errno (EINTR, EINVAL, EIO) on failure.
        if (tcsetattr(StdinFd, TCSANOW, raw) != 0)
        {
            throw new IOException($"tcsetattr failed (errno {Marshal.GetLastPInvokeError()})");
        }
        return new RawMode(saved);
    }

    /// <summary>Restores the terminal settings saved when raw mode began.</summary>
    internal sealed class RawMode : IDisposable
    {
        private readonly byte[] _saved;
        private int _restored;

        public RawMode(byte[] saved) => _saved = saved;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _restored, 1) == 0)
            {
                // Best effort by design: at exit there is nobody left to tell if the terminal went away.
                _ = tcsetattr(StdinFd, TCSANOW, _saved);
            }
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize
    {
        public ushort Rows;
        public ushort Cols;
        public ushort XPixel;
        public ushort YPixel;
    }

    // isatty: 1 for a terminal, 0 otherwise (errno EBADF or ENOTTY).
    [LibraryImport("libc", SetLastError = true)]
    private static partial int isatty(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcgetattr(int fd, [Out] byte[] termios);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int tcsetattr(int fd, int optionalActions, [In] byte[] termios);

    // cfmakeraw: no return value; it only edits the struct.
    [LibraryImport("libc")]
    private static partial void cfmakeraw([In, Out] byte[] termios);

    // ioctl(TIOCGWINSZ): 0 on success, -1 with errno (ENOTTY when fd is not a terminal).
    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, out WinSize size);
}
