using System.Text;
using Paddock.Daemon.Runtimes.Gvisor;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// The gVisor tier lists its containers from runsc's state files (runsc list would ask a frozen Sentry and hang). The
/// sample is the shape runsc 0.0~20240729 writes, trimmed: the same id, status and pid runsc list printed for it.
/// </summary>
public sealed class RunscStateFileTests
{
    [Fact]
    public void A_state_file_gives_the_id_status_sandbox_pid_and_creation_time()
    {
        const string state = """
            {"id":"4lqfl83x92dhwldju68j","spec":{"ociVersion":"1.2.0"},"bundleDir":"/x","createdAt":"2026-12-06T23:38:25.893523475Z",
             "owner":"","consoleSocket":"","status":"running","goferPid":30279,
             "sandbox":{"id":"4lqfl83x92dhwldju68j","pid":30282,"uid":0,"gid":0,"controlSocketPath":"/r/runsc-4lqfl83x92dhwldju68j.sock"},
             "saver":{"rootDir":"/r","id":{"sandboxId":"4lqfl83x92dhwldju68j","containerId":"4lqfl83x92dhwldju68j"}}}
            """;
        var container = RunscCli.ReadState(Encoding.UTF8.GetBytes(state))!;
        Assert.Equal("4lqfl83x92dhwldju68j", container.Id);
        Assert.Equal(30282, container.Pid);
        Assert.Equal("running", container.Status);
        Assert.True(container.IsAlive);
        Assert.Equal(new DateTimeOffset(2026, 12, 6, 23, 38, 25, TimeSpan.Zero), container.Created.AddTicks(-(container.Created.Ticks % TimeSpan.TicksPerSecond)));
    }

    [Fact]
    public void A_stopped_container_is_not_alive_and_a_file_without_an_id_is_no_container()
    {
        var stopped = RunscCli.ReadState("""{"id":"a","status":"stopped","sandbox":{"pid":0}}"""u8)!;
        Assert.False(stopped.IsAlive);
        Assert.Equal(0, stopped.Pid);
        Assert.Equal(DateTimeOffset.UnixEpoch, stopped.Created);
        Assert.Null(RunscCli.ReadState("""{"status":"running"}"""u8));
        Assert.Null(RunscCli.ReadState("[]"u8));
        Assert.ThrowsAny<System.Text.Json.JsonException>(() => RunscCli.ReadState("""{"id":"a","sta"""u8));
    }
}
