using Paddock.Daemon.Native;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// <see cref="OutputFileCommand"/>, which starts runc and runsc without a shell: the redirections the shell did
/// (<c>&lt;/dev/null &gt;&gt;"$log" 2&gt;&amp;1</c>), the exit status, the child's signal state, and cancellation.
/// </summary>
public sealed class OutputFileCommandTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("paddock-outcmd-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Output_and_errors_are_appended_to_the_file_and_stdin_is_empty()
    {
        var log = Path.Combine(_directory, "log");
        File.WriteAllText(log, "before\n");

        // cat reads stdin: /dev/null ends at once. `$1` shows the arguments arrive unchanged, spaces included.
        var status = await OutputFileCommand.RunAsync("sh", ["-c", "echo out \"$1\"; cat; echo err >&2; exit 3", "sh", "a b"], log, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal(3, status);
        Assert.Equal("before\nout a b\nerr\n", File.ReadAllText(log));
    }

    [Fact]
    public async Task The_output_file_is_created_and_opened_for_appending()
    {
        var log = Path.Combine(_directory, "new");

        // O_APPEND: after another writer truncated the file, the program's next write lands at the new end, not at
        // its old offset (which a plain O_WRONLY would keep, leaving a hole of NULs).
        var status = await OutputFileCommand.RunAsync("sh", ["-c", "echo first; : > \"$1\"; echo second", "sh", log], log, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal(0, status);
        Assert.Equal("second\n", File.ReadAllText(log));
    }

    [Fact]
    public async Task The_program_starts_with_no_signal_ignored_or_blocked_and_the_environment_Process_Start_gives()
    {
        var status = Path.Combine(_directory, "status");
        var environment = Path.Combine(_directory, "environment");

        // grep reads its own status (exec: a shell blocks signals around its own forks, which a read of the shell's
        // status could catch). The .NET runtime ignores SIGPIPE and glibc's spawn ignores its own two signals in the
        // child; the program must inherit neither, nor any signal a runtime thread blocks.
        await OutputFileCommand.RunAsync("sh", ["-c", "exec grep -E '^Sig(Ign|Blk)' /proc/self/status"], status, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        await OutputFileCommand.RunAsync("env", [], environment, TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));
        var started = await ExternalCommand.RunAsync("env", [], TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal(["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"], File.ReadAllLines(status));
        Assert.Equal(started.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries).Order(), File.ReadAllLines(environment).Order());
    }

    [Fact]
    public async Task A_program_ended_by_a_signal_reports_128_plus_it()
    {
        var status = await OutputFileCommand.RunAsync("sh", ["-c", "kill -9 $$"], Path.Combine(_directory, "log"), TestEnvironment.Timeout(TimeSpan.FromSeconds(30)));

        Assert.Equal(137, status);
    }

    [Fact]
    public async Task A_missing_program_throws_FileNotFound_and_a_missing_directory_for_the_output_IOException()
    {
        var log = Path.Combine(_directory, "log");

        var missing = await Assert.ThrowsAsync<FileNotFoundException>(() =>
            OutputFileCommand.RunAsync("paddock-no-such-program", [], log, TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));
        await Assert.ThrowsAsync<IOException>(() =>
            OutputFileCommand.RunAsync("true", [], Path.Combine(_directory, "no-such-dir", "log"), TestEnvironment.Timeout(TimeSpan.FromSeconds(30))));

        Assert.Contains("not found", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Cancellation_kills_the_program_and_what_it_started()
    {
        var log = Path.Combine(_directory, "log");
        using var cancel = new CancellationTokenSource();

        // The shell starts a sleep in the background, prints both pids and waits: the tree is two processes.
        var run = OutputFileCommand.RunAsync("sh", ["-c", "sleep 300 & echo $$ $!; wait"], log, cancel.Token);
        var pids = await ReadPidsAsync(log);
        cancel.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.False(Directory.Exists($"/proc/{pids[0]}"), "the shell was reaped");
        // The sleep was SIGKILLed; its parent gone, init reaps it: wait (bounded) until it is no longer alive.
        for (var i = 0; i < 100 && IsAlive(pids[1]); i++)
        {
            await Task.Delay(50);
        }
        Assert.False(IsAlive(pids[1]), "the sleep the shell started was killed");
    }

    private static async Task<int[]> ReadPidsAsync(string log)
    {
        for (var i = 0; i < 600; i++)
        {
            var text = File.Exists(log) ? File.ReadAllText(log) : "";
            if (text.EndsWith('\n'))
            {
                return [.. text.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse)];
            }
            await Task.Delay(50);
        }
        throw new TimeoutException("the shell did not print its pids within 30 s");
    }

    // Alive: the process exists and is not a zombie (state Z in /proc/PID/stat waits only for its reaper).
    private static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }
}
