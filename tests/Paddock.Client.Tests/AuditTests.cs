using System.Text;

namespace Paddock.Client.Tests;

/// <summary>The audit trail of what the C# SDK did in a sandbox, read with the SDK (SandboxAudit) after the kill.</summary>
[Trait("needs", "daemon")]
public sealed class AuditTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    private readonly DaemonProcess _daemon = fixture.Daemon;

    [Fact]
    public async Task Commands_and_a_pty_session_are_in_the_trail_in_order_with_their_exit_codes()
    {
        string id;
        await using (var sandbox = await Sandbox.CreateAsync("base", new SandboxOptions { Connection = _daemon.Connection(), Timeout = TimeSpan.FromMinutes(5) }, Limits.Token(120)))
        {
            id = sandbox.SandboxId;
            await sandbox.Commands.RunAsync("echo from csharp", cancellationToken: Limits.Token());
            var failed = await Assert.ThrowsAsync<CommandExitException>(() => sandbox.Commands.RunAsync("exit 6", cancellationToken: Limits.Token()));
            Assert.Equal(6, failed.Result.ExitCode);
            await using var pty = await sandbox.Pty.CreateAsync(cancellationToken: Limits.Token());
            await pty.SendInputAsync(Encoding.UTF8.GetBytes("exit 9\n"), Limits.Token());
            int ptyExit;
            try
            {
                ptyExit = (await pty.WaitAsync(Limits.Token())).ExitCode;
            }
            catch (CommandExitException ex)
            {
                ptyExit = ex.Result.ExitCode;
            }
            Assert.Equal(9, ptyExit);
        }

        // Disposed: killed. The trail stays.
        var events = new List<SandboxAuditEvent>();
        await foreach (var e in SandboxAudit.ReadAsync(id, connection: _daemon.Connection(), cancellationToken: Limits.Token()))
        {
            events.Add(e);
        }
        Assert.Equal(["process.start", "process.end", "process.start", "process.end", "pty.open", "pty.close"], events.Select(e => e.Kind));
        Assert.Equal([0, 6, 9], events.Where(e => e.Kind is "process.end" or "pty.close").Select(e => e.ExitCode ?? -1));
        Assert.Contains("echo from csharp", events[0].Args!);
        Assert.Equal(events[0].Pid, events[1].Pid);
        // --follow on an ended sandbox returns once the trail is read.
        var followed = 0;
        await foreach (var _ in SandboxAudit.ReadAsync(id, follow: true, pollInterval: TimeSpan.FromMilliseconds(100), connection: _daemon.Connection(), cancellationToken: Limits.Token(60)))
        {
            followed++;
        }
        Assert.Equal(events.Count, followed);
    }
}
