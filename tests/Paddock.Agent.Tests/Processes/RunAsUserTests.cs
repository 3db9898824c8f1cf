using System.Diagnostics;
using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>A temporary account (useradd, in the group "users"), removed with its home afterwards.</summary>
public sealed class TemporaryUserFixture : IAsyncLifetime
{
    public string Name { get; } = "pdk" + Guid.NewGuid().ToString("n")[..12];

    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        await RunAsync("useradd", "-m", "-s", "/bin/sh", "-G", "users", Name);
        Agent = await AgentProcess.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await Agent.DisposeAsync();
        await RunAsync("userdel", "-r", "-f", Name);
    }

    internal static async Task<string> RunAsync(string command, params string[] args)
    {
        var start = new ProcessStartInfo(command) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        using var cts = Calls.Timeout();
        var output = await process.StandardOutput.ReadToEndAsync(cts.Token);
        var error = await process.StandardError.ReadToEndAsync(cts.Token);
        await process.WaitForExitAsync(cts.Token);
        // userdel warns (exit 12) when the mail spool is missing; that is not a failure of the test.
        Assert.True(process.ExitCode is 0 or 12, $"{command} {string.Join(' ', args)} failed ({process.ExitCode}): {error}");
        return output;
    }
}

/// <summary>Processes started as another user go through the exec helper: identity, groups, home, terminal.</summary>
public sealed class RunAsUserTests : IClassFixture<TemporaryUserFixture>
{
    private readonly TemporaryUserFixture _user;

    public RunAsUserTests(TemporaryUserFixture user)
    {
        _user = user;
    }

    private ConnectClient Client() => new(_user.Agent.Http);

    private ConnectCallOptions AsUser => new() { User = _user.Name };

    [Fact]
    public async Task A_command_runs_with_the_user_s_ids_groups_home_and_no_root_privileges()
    {
        using var cts = Calls.Timeout();
        var uid = (await TemporaryUserFixture.RunAsync("id", "-u", _user.Name)).Trim();
        var script = "id -u; id -g; id -G; pwd; echo \"$HOME $USER $LOGNAME\"; touch /root/paddock-should-fail 2>/dev/null && echo WROTE || echo denied";
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell(script), cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);

        var lines = run.StdoutText.Split('\n');
        Assert.Equal(0, end.ExitCode);
        Assert.Equal(uid, lines[0]);
        Assert.Contains("100", lines[2].Split(' ')); // the supplementary group "users"
        Assert.Equal($"/home/{_user.Name}", lines[3]);
        Assert.Equal($"/home/{_user.Name} {_user.Name} {_user.Name}", lines[4]);
        Assert.Equal("denied", lines[5]);
        Assert.False(File.Exists("/root/paddock-should-fail"));
    }

    [Fact]
    public async Task A_directory_the_user_may_not_enter_is_refused_with_a_clear_message()
    {
        using var cts = Calls.Timeout();
        var dir = Directory.CreateTempSubdirectory("paddock-private-");
        try
        {
            if (OperatingSystem.IsLinux())
            {
                File.SetUnixFileMode(dir.FullName, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            }
            var request = Calls.Shell("pwd");
            request.Process.Cwd = dir.FullName;
            var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token, AsUser));
            Assert.Equal(ConnectCode.InvalidArgument, error.Code);
            Assert.Contains(dir.FullName, error.Message, StringComparison.Ordinal);
            Assert.Contains("Permission denied", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public async Task A_missing_command_run_as_the_user_is_refused_with_its_name()
    {
        using var cts = Calls.Timeout();
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/nonexistent/paddock-tool" } };
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), request, cts.Token, AsUser));
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        Assert.Contains("/nonexistent/paddock-tool", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_terminal_for_the_user_is_theirs_and_controlling()
    {
        using var cts = Calls.Timeout();
        var request = PtyTests.OnTerminal("stty size < /dev/tty && stat -c %U $(tty)", 90, 20);
        await using var run = await ProcessRun.StartAsync(Client(), request, cts.Token, AsUser);
        var end = await run.WaitEndAsync(cts.Token);
        Assert.Equal(0, end.ExitCode);
        Assert.Contains("20 90\r\n", run.PtyText, StringComparison.Ordinal);
        Assert.Contains(_user.Name + "\r\n", run.PtyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_agent_signals_a_process_of_another_user()
    {
        using var cts = Calls.Timeout();
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("sleep 30"), cts.Token, AsUser);
        await Client().SignalAsync(run.Pid, Signal.Sigkill, cts.Token);
        Assert.Equal("signal: killed", (await run.WaitEndAsync(cts.Token)).Status);
    }

    [Fact]
    public async Task An_unknown_user_is_unauthenticated()
    {
        using var cts = Calls.Timeout();
        var error = await Assert.ThrowsAsync<ConnectException>(() => ProcessRun.StartAsync(Client(), Calls.Shell("true"), cts.Token, new ConnectCallOptions { User = "no-such-user-here" }));
        Assert.Equal(ConnectCode.Unauthenticated, error.Code);
    }
}
