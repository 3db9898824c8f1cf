using System.Diagnostics;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Tests;

public sealed class SessionCensusTests
{
    [Fact]
    public async Task Counts_the_processes_of_a_real_session_and_nothing_else()
    {
        // setsid makes the shell a session leader (its pid is the session id); it starts two children in it.
        var start = new ProcessStartInfo("setsid") { ArgumentList = { "sh", "-c", "sleep 30 & sleep 30 & echo ready; wait" }, RedirectStandardOutput = true };
        using var process = Process.Start(start)!;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            Assert.Equal("ready", await process.StandardOutput.ReadLineAsync(timeout.Token));
            Assert.Equal(3, SessionCensus.Count(process.Id));
            Assert.Equal(0, SessionCensus.Count(int.MaxValue));
        }
        finally
        {
            Native.Libc.kill(-process.Id, Native.Libc.SIGKILL);
            await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);
        }
    }
}
