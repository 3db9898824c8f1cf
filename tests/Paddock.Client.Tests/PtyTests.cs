using System.Text;

namespace Paddock.Client.Tests;

/// <summary>sandbox.Pty against a real agent.</summary>
public sealed class PtyTests : IClassFixture<AgentFixture>
{
    private readonly AgentProcess _agent;

    public PtyTests(AgentFixture fixture) => _agent = fixture.Agent;

    [Fact]
    public async Task A_terminal_runs_what_is_typed_resizes_and_exits()
    {
        await using var sandbox = _agent.Sandbox();
        await using var pty = await sandbox.Pty.CreateAsync(new PtyOptions { Cols = 100, Rows = 30, Timeout = TimeSpan.Zero }, Limits.Token());
        var screen = new StringBuilder();
        var reader = Task.Run(async () =>
        {
            await foreach (var chunk in pty.ReadOutputAsync(Limits.Token()))
            {
                lock (screen)
                {
                    screen.Append(Encoding.UTF8.GetString(chunk.Span));
                }
            }
        });

        await pty.SendInputAsync(Encoding.UTF8.GetBytes("echo $((6*7))x\n"), Limits.Token());
        await Until(() => Contains(screen, "42x"));

        await pty.ResizeAsync(120, 40, Limits.Token());
        await pty.SendInputAsync(Encoding.UTF8.GetBytes("stty size\n"), Limits.Token());
        await Until(() => Contains(screen, "40 120"));

        await pty.SendInputAsync(Encoding.UTF8.GetBytes("exit 5\n"), Limits.Token());
        var result = await pty.WaitAsync(Limits.Token());
        Assert.Equal(5, result.ExitCode);
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task Ctrl_C_interrupts_the_foreground_command()
    {
        await using var sandbox = _agent.Sandbox();
        await using var pty = await sandbox.Pty.CreateAsync(new PtyOptions { Timeout = TimeSpan.Zero }, Limits.Token());
        var screen = new StringBuilder();
        var reader = Task.Run(async () =>
        {
            await foreach (var chunk in pty.ReadOutputAsync(Limits.Token()))
            {
                lock (screen)
                {
                    screen.Append(Encoding.UTF8.GetString(chunk.Span));
                }
            }
        });
        await pty.SendInputAsync(Encoding.UTF8.GetBytes("sleep 60; echo not-$((2+3))-interrupted\n"), Limits.Token());
        await Task.Delay(300, Limits.Token());
        await pty.SendInputAsync(new byte[] { 3 }, Limits.Token());
        await pty.SendInputAsync(Encoding.UTF8.GetBytes("echo after-$((1+1))\n"), Limits.Token());
        await Until(() => Contains(screen, "after-2"));
        Assert.False(Contains(screen, "not-5-interrupted"));
        Assert.True(await pty.KillAsync(Limits.Token()));
        var result = await pty.WaitAsync(Limits.Token());
        Assert.NotEqual(0, result.ExitCode);
        await reader.WaitAsync(TimeSpan.FromSeconds(30));
    }

    private static bool Contains(StringBuilder screen, string text)
    {
        lock (screen)
        {
            return screen.ToString().Contains(text, StringComparison.Ordinal);
        }
    }

    /// <summary>Polls a condition: bounded to 300 tries of 100 ms.</summary>
    private static async Task Until(Func<bool> condition)
    {
        for (var i = 0; i < 300; i++)
        {
            if (condition())
            {
                return;
            }
            await Task.Delay(100, Limits.Token());
        }
        Assert.Fail("the terminal never showed the expected output");
    }
}
