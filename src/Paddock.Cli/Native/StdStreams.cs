using Microsoft.Win32.SafeHandles;

namespace Paddock.Cli.Native;

/// <summary>
/// This process's standard streams as byte streams. Output goes through Console's streams, which write(2) at the
/// descriptor's own offset (a FileStream over fd 1 would pwrite at its own position and overwrite a shared log
/// file). Input from a terminal is read raw from fd 0, because Console's stdin stream edits lines on a terminal.
/// </summary>
internal static class StdStreams
{
    public static Stream Output() => Console.OpenStandardOutput();

    public static Stream Error() => Console.OpenStandardError();

    public static Stream Input() => Terminal.IsTerminal(0)
        ? new FileStream(new SafeFileHandle(0, ownsHandle: false), FileAccess.Read, 1)
        : Console.OpenStandardInput();
}
