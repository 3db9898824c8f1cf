using System.Diagnostics;
using System.Globalization;
using Paddock.Daemon.Runtimes.Runc;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// <see cref="RuncCli.TryForgetStopped"/>: runc's state directory of a container is removed without runc only when it
/// is the state file of a started container whose init no longer runs; anything else is left for runc delete.
/// </summary>
public sealed class RuncStateTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("paddock-runc-state-");
    private readonly RuncCli _runc;

    public RuncStateTests() => _runc = new RuncCli("/nonexistent/runc", _root.FullName);

    [Fact]
    public void The_state_of_a_container_whose_init_is_gone_is_removed()
    {
        using var child = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
        child.WaitForExit();
        var dir = State("gone", $$"""{"id":"gone","init_process_pid":{{child.Id}},"init_process_start":1}""");

        Assert.True(_runc.TryForgetStopped("gone"));
        Assert.False(Directory.Exists(dir));
    }

    [Fact]
    public void The_state_of_a_running_init_is_left_to_runc()
    {
        var dir = State("running", $$"""{"id":"running","init_process_pid":{{Environment.ProcessId}},"init_process_start":{{OwnStartTime()}}}""");

        Assert.False(_runc.TryForgetStopped("running"));
        Assert.True(File.Exists(Path.Combine(dir, "state.json")));
    }

    [Fact]
    public void A_pid_reused_by_another_process_counts_as_gone()
    {
        // This test's own pid, with another start time: the container's init was an earlier process of that pid.
        var dir = State("reused", $$"""{"id":"reused","init_process_pid":{{Environment.ProcessId}},"init_process_start":{{OwnStartTime() - 1}}}""");

        Assert.True(_runc.TryForgetStopped("reused"));
        Assert.False(Directory.Exists(dir));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""{"id":"x"}""")]
    [InlineData("""{"id":"x","init_process_pid":"12","init_process_start":1}""")]
    public void An_unreadable_state_is_left_to_runc(string json)
    {
        var dir = State("odd", json);

        Assert.False(_runc.TryForgetStopped("odd"));
        Assert.True(Directory.Exists(dir));
    }

    [Fact]
    public void A_container_created_but_never_started_is_left_to_runc()
    {
        // Its init waits on exec.fifo until runc start.
        var dir = State("created", """{"id":"created","init_process_pid":999999999,"init_process_start":1}""");
        File.WriteAllBytes(Path.Combine(dir, "exec.fifo"), []);

        Assert.False(_runc.TryForgetStopped("created"));
        Assert.True(Directory.Exists(dir));
    }

    [Fact]
    public void An_id_runc_does_not_know_is_forgotten_already() =>
        Assert.True(_runc.TryForgetStopped("never-created"));

    private string State(string id, string json)
    {
        var dir = Directory.CreateDirectory(Path.Combine(_root.FullName, id)).FullName;
        File.WriteAllText(Path.Combine(dir, "state.json"), json);
        return dir;
    }

    private static ulong OwnStartTime()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        return ulong.Parse(stat[(stat.LastIndexOf(')') + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries)[19], CultureInfo.InvariantCulture);
    }

    public void Dispose() => _root.Delete(recursive: true);
}
