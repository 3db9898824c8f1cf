using System.Globalization;
using Paddock.Agent.Native;
using Paddock.Envd.Process;

namespace Paddock.Agent.Processes;

/// <summary>
/// How a process ended, decoded from a wait(2) status. The text follows Go's os.ProcessState.String(), which E2B's
/// envd reports and its SDKs show to users ("exit status 1", "signal: killed").
/// </summary>
internal readonly record struct ExitStatus(bool Exited, int ExitCode, int Signal, bool CoreDumped)
{
    public static ExitStatus FromWaitStatus(int status)
    {
        var low = status & 0x7f;
        if (low == 0)
        {
            return new ExitStatus(true, (status >> 8) & 0xff, 0, false);
        }
        // Stopped/continued statuses (0x7f, 0xffff) never reach us: waitpid is called without WUNTRACED/WCONTINUED.
        return new ExitStatus(false, -1, low, (status & 0x80) != 0);
    }

    public string Text => Exited
        ? "exit status " + ExitCode.ToString(CultureInfo.InvariantCulture)
        : "signal: " + SignalName(Signal) + (CoreDumped ? " (core dumped)" : "");

    /// <summary>
    /// The wire event: exit_code -1 for a signal (as Go's ExitCode()), and an error text for any unsuccessful end,
    /// which E2B's SDKs raise as the message of their CommandExitError.
    /// </summary>
    public ProcessEvent.Types.EndEvent ToEndEvent()
    {
        var end = new ProcessEvent.Types.EndEvent { ExitCode = ExitCode, Exited = Exited, Status = Text };
        if (!Exited || ExitCode != 0)
        {
            end.Error = Text;
        }
        return end;
    }

    // Go's syscall signal table (zerrors_linux_amd64.go) for the signals a sandboxed command commonly dies of.
    private static string SignalName(int signal) => signal switch
    {
        Signals.SIGHUP => "hangup",
        Signals.SIGINT => "interrupt",
        Signals.SIGQUIT => "quit",
        Signals.SIGILL => "illegal instruction",
        Signals.SIGTRAP => "trace/breakpoint trap",
        Signals.SIGABRT => "aborted",
        Signals.SIGBUS => "bus error",
        Signals.SIGFPE => "floating point exception",
        Signals.SIGKILL => "killed",
        Signals.SIGUSR1 => "user defined signal 1",
        Signals.SIGSEGV => "segmentation fault",
        Signals.SIGUSR2 => "user defined signal 2",
        Signals.SIGPIPE => "broken pipe",
        Signals.SIGALRM => "alarm clock",
        Signals.SIGTERM => "terminated",
        _ => "signal " + signal.ToString(CultureInfo.InvariantCulture),
    };
}
