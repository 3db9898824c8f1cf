using System.Diagnostics;
using Paddock.Agent.Hosting;

namespace Paddock.Agent.Tests.Hosting;

/// <summary>An agent removes the private h2c sockets that agents killed before it left behind (<see cref="H2cHandoff.RemoveStale"/>).</summary>
public sealed class H2cSocketTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("paddock-h2c-stale-");

    [Fact]
    public void Sockets_of_gone_agents_and_of_this_pid_go_and_those_of_live_agents_and_other_files_stay()
    {
        // A pid that names no process: one of a child that has been reaped.
        using var child = Process.Start(new ProcessStartInfo("/bin/true") { UseShellExecute = false })!;
        child.WaitForExit();
        var gonePid = child.Id;
        Assert.False(Directory.Exists($"/proc/{gonePid}"));

        var gone = Touch($".paddock-agent-h2-{gonePid}-{Guid.NewGuid():N}.sock");
        var mine = Touch($".paddock-agent-h2-{Environment.ProcessId}-{Guid.NewGuid():N}.sock");
        // PID 1 is alive in any namespace this test runs in.
        var live = Touch($".paddock-agent-h2-1-{Guid.NewGuid():N}.sock");
        var malformed = Touch(".paddock-agent-h2-notapid-x.sock");
        var other = Touch("unrelated.sock");

        Assert.Equal(2, H2cHandoff.RemoveStale(_dir.FullName));

        Assert.False(File.Exists(gone));
        Assert.False(File.Exists(mine));
        Assert.True(File.Exists(live));
        Assert.True(File.Exists(malformed));
        Assert.True(File.Exists(other));
        Assert.Equal(0, H2cHandoff.RemoveStale(_dir.FullName));
    }

    [Fact]
    public void A_directory_that_is_not_there_removes_nothing() =>
        Assert.Equal(0, H2cHandoff.RemoveStale(Path.Combine(_dir.FullName, "missing")));

    private string Touch(string name)
    {
        var path = Path.Combine(_dir.FullName, name);
        File.WriteAllBytes(path, []);
        return path;
    }

    public void Dispose() => _dir.Delete(recursive: true);
}
