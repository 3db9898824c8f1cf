using Paddock.Daemon.Native;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary><see cref="ExternalCommand"/>'s background mode: the program itself runs at nice 10, with no nice(1) in between.</summary>
public sealed class ExternalCommandTests
{
    // Field 19 of /proc/PID/stat is the nice value; the program reads its own after the priority has had time to be set.
    private const string OwnNice = "sleep 1; cut -d' ' -f19 /proc/$$/stat; cat /proc/$$/comm";

    [Fact]
    public async Task A_background_command_runs_at_nice_10_and_a_normal_one_at_the_daemons_own()
    {
        var own = File.ReadAllText("/proc/self/stat").Split(')')[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)[16];

        var background = await ExternalCommand.RunAsync("/bin/sh", ["-c", OwnNice], TestEnvironment.Timeout(TimeSpan.FromSeconds(60)), background: true);
        var normal = await ExternalCommand.RunAsync("/bin/sh", ["-c", OwnNice], TestEnvironment.Timeout(TimeSpan.FromSeconds(60)));

        Assert.True(background.Succeeded, background.Describe());
        Assert.Equal(["10", "sh"], background.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal([own, "sh"], normal.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }
}
