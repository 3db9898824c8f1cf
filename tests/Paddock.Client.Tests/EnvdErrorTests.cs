namespace Paddock.Client.Tests;

/// <summary>How envd-side failures reach the caller: typed, never a raw HttpRequestException.</summary>
public sealed class EnvdErrorTests
{
    [Fact]
    public async Task A_secure_agent_refuses_a_missing_token_and_accepts_the_right_one()
    {
        await using var agent = await AgentProcess.StartAsync("--access-token", "s3cret");
        await using (var without = agent.Sandbox())
        {
            await Assert.ThrowsAsync<AuthenticationException>(() => without.Commands.RunAsync("true", cancellationToken: Limits.Token()));
            await Assert.ThrowsAsync<AuthenticationException>(() => without.Files.ReadTextAsync("/etc/hostname", cancellationToken: Limits.Token()));
            await Assert.ThrowsAsync<AuthenticationException>(() => without.Commands.ListAsync(Limits.Token()));
        }
        await using var with = agent.Sandbox(accessToken: "s3cret");
        Assert.Equal("ok\n", (await with.Commands.RunAsync("echo ok", cancellationToken: Limits.Token())).Stdout);
        Assert.Equal(await File.ReadAllTextAsync("/etc/hostname", Limits.Token()), await with.Files.ReadTextAsync("/etc/hostname", cancellationToken: Limits.Token()));
        Assert.True(await with.IsRunningAsync(Limits.Token()));
    }

    [Fact]
    public async Task Nothing_listening_is_a_ServiceUnreachableException()
    {
        var port = AgentProcess.FreePort();
        await using var sandbox = Sandbox.ForEnvd(new ConnectionOptions { Debug = true, SandboxUrl = new Uri($"http://127.0.0.1:{port}") }, "nobody-home");
        var ex = await Assert.ThrowsAsync<ServiceUnreachableException>(() => sandbox.Commands.RunAsync("true", cancellationToken: Limits.Token()));
        Assert.Contains($"127.0.0.1:{port}", ex.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ServiceUnreachableException>(() => sandbox.Files.ReadTextAsync("/x", cancellationToken: Limits.Token()));
        await Assert.ThrowsAsync<ServiceUnreachableException>(() => sandbox.Commands.ListAsync(Limits.Token()));
    }

    [Fact]
    public async Task The_callers_cancellation_stays_an_OperationCanceledException()
    {
        await using var agent = await AgentProcess.StartAsync();
        await using var sandbox = agent.Sandbox();
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sandbox.Commands.ListAsync(cancelled.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => sandbox.Files.ReadTextAsync("/etc/hostname", cancellationToken: cancelled.Token));
    }
}
