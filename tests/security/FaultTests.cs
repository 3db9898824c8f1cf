using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Paddock.Security.Tests;

/// <summary>
/// Faults (issue 5, item 4), bounded: SIGKILL of paddockd in the middle of creates and destroys, a restart over the
/// same state, and then nothing of a sandbox left on the host that the daemon does not know about: once every
/// sandbox the restarted daemon lists is killed, no mount, network namespace, sandbox directory, cgroup or process
/// of its tier remains.
/// </summary>
[Collection(BatteryCollection.Name)] // not in parallel with the battery: its counts and its load are its own
public sealed class FaultTests(ITestOutputHelper output)
{
    private const int Rounds = 3;

    [Fact]
    public async Task A_daemon_killed_mid_create_and_mid_destroy_recovers_without_leaks()
    {
        var random = new Random(20261128);
        await using var daemon = await PaddockdProcess.StartAsync();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(120) };

        for (var round = 0; round < Rounds; round++)
        {
            // One sandbox to destroy while the daemon dies, and one create in flight.
            await using var doomed = await TestSandbox.CreateAsync(daemon, http);
            var create = SendAsync(http, daemon, HttpMethod.Post, "/sandboxes", """{"templateID":"base","timeout":600}""");
            var destroy = SendAsync(http, daemon, HttpMethod.Delete, "/sandboxes/" + doomed.Id, null);
            await Task.Delay(random.Next(20, 400));
            await daemon.KillAndRestartAsync();
            output.WriteLine($"round {round}: create {await Outcome(create)}, destroy {await Outcome(destroy)}");
        }

        // What the restarted daemon knows about, it can kill; what it does not know about must not exist.
        var (status, body) = await SendAsync(http, daemon, HttpMethod.Get, "/v2/sandboxes", null);
        Assert.Equal(HttpStatusCode.OK, status);
        foreach (var s in JsonNode.Parse(body)!.AsArray())
        {
            var (killed, text) = await SendAsync(http, daemon, HttpMethod.Delete, "/sandboxes/" + (string)s!["sandboxID"]!, null);
            Assert.True(killed is HttpStatusCode.NoContent or HttpStatusCode.NotFound, $"kill answered {(int)killed}: {text}");
        }
        var left = HostLeftovers.Take(daemon.StateDir, daemon.CgroupParent);
        Assert.True(left == HostLeftovers.None, $"left on the host after recovery: {left}; daemon log: {daemon.Log}");
    }

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient http, PaddockdProcess daemon, HttpMethod method, string path, string? json)
    {
        using var request = new HttpRequestMessage(method, new Uri(daemon.Url, path));
        request.Headers.Add("X-API-Key", daemon.ApiKey);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        using var response = await http.SendAsync(request, cts.Token);
        return (response.StatusCode, await response.Content.ReadAsStringAsync(cts.Token));
    }

    private static async Task<string> Outcome(Task<(HttpStatusCode Status, string Body)> call)
    {
        try
        {
            return ((int)(await call).Status).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException)
        {
            return "cut off (" + ex.GetType().Name + ")";
        }
    }
}
