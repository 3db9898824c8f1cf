using System.Diagnostics;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>samples/AgentLoop works as written: run against a real agent in debug mode (no control plane).</summary>
public sealed class SampleTests : IClassFixture<AgentFixture>
{
    private readonly AgentProcess _agent;

    public SampleTests(AgentFixture fixture) => _agent = fixture.Agent;

    [Fact]
    public async Task The_agent_loop_sample_writes_runs_and_reads_back()
    {
        var dll = Path.Combine(Repo.Root, "samples", "AgentLoop", "bin", Repo.Configuration, "net10.0", "AgentLoop.dll");
        Assert.True(File.Exists(dll), $"{dll} is not built");
        var start = new ProcessStartInfo("dotnet") { ArgumentList = { dll }, RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["E2B_DEBUG"] = "true";
        start.Environment["E2B_SANDBOX_URL"] = _agent.Url.ToString();
        start.Environment["PADDOCK_API_KEY"] = "unused-in-debug-mode";
        start.Environment.Remove("PADDOCK_URL");
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(180)).Token);
        var output = await stdout;
        Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}: {output} {await stderr}");
        Assert.Contains("[sandbox] found 25 primes", output, StringComparison.Ordinal);
        Assert.Contains("the program wrote: {\"count\": 25, \"largest\": 97}", output, StringComparison.Ordinal);
    }
}
