using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Pools;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using Paddock.Daemon.Tests.Teams;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Observability;

/// <summary>GET /metrics scraped around real creates (pooled and cold), a failed create, commands and a kill.</summary>
public sealed class MetricsTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() =>
        _daemon = await TestDaemon.StartAsync(_runtime, _state.Path,
            o => o with { Pools = new PoolSettings { Sizes = new Dictionary<string, int> { ["base"] = 1 }, RefillConcurrency = 1 } });

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    /// <summary>The scrape as series → value (a series absent is 0).</summary>
    private async Task<Dictionary<string, double>> ScrapeAsync()
    {
        using var response = await _daemon.Api.GetAsync("/metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType, StringComparison.Ordinal);
        var series = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in (await response.Content.ReadAsStringAsync()).Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            var space = line.LastIndexOf(' ');
            series[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return series;
    }

    private static double Delta(Dictionary<string, double> before, Dictionary<string, double> after, string series) =>
        after.GetValueOrDefault(series) - before.GetValueOrDefault(series);

    private async Task WaitForPoolAsync()
    {
        var pools = _daemon.Services.GetRequiredService<WarmPools>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!(pools.ReadyCounts.TryGetValue("base", out var ready) && ready >= 1))
        {
            Assert.True(DateTime.UtcNow < deadline, "the base pool did not fill within 60 s");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Counters_histograms_and_gauges_move_with_creates_commands_kills_and_failures()
    {
        await WaitForPoolAsync();
        var s0 = await ScrapeAsync();
        Assert.Equal(1, s0["paddock_pool_ready{pool=\"base\"}"]);

        // A pooled create: the daemon's default limits, which the pool sandbox has.
        var pooled = await CreateAsync(_daemon, """{"templateID":"base"}""");
        var pooledId = Get<string>(pooled, "sandboxID");
        var s1 = await ScrapeAsync();
        Assert.Equal(1, Delta(s0, s1, "paddock_sandbox_creates_total{outcome=\"ok\",path=\"pooled\"}"));
        Assert.Equal(1, Delta(s0, s1, "paddock_sandbox_create_seconds_count{path=\"pooled\"}"));
        Assert.Equal(0, Delta(s0, s1, "paddock_sandbox_creates_total{outcome=\"ok\",path=\"cold\"}"));
        Assert.Equal(1, s1["paddock_sandboxes{state=\"running\",tier=\"local-test\",team=\"default\"}"]);

        // A cold create: limits no pool sandbox has. The pool refills first, so the next runtime start is this one's.
        await WaitForPoolAsync();
        var cold = await CreateAsync(_daemon, """{"templateID":"base","cpuCount":1}""");
        var coldId = Get<string>(cold, "sandboxID");
        var token = Get<string>(cold, "envdAccessToken");
        Assert.Equal(0, await EnvdCalls.RunAsync(_daemon, coldId, token, "echo metrics"));
        var s2 = await ScrapeAsync();
        Assert.Equal(1, Delta(s1, s2, "paddock_sandbox_creates_total{outcome=\"ok\",path=\"cold\"}"));
        Assert.Equal(1, Delta(s1, s2, "paddock_sandbox_create_seconds_count{path=\"cold\"}"));
        Assert.True(Delta(s1, s2, "paddock_sandbox_create_seconds_sum{path=\"cold\"}") > 0);
        // The cold create's histogram bucket at +Inf counts it; a bucket below any real create time (1 ms) does not.
        Assert.Equal(1, Delta(s1, s2, "paddock_sandbox_create_seconds_bucket{path=\"cold\",le=\"+Inf\"}"));
        Assert.Equal(2, s2["paddock_sandboxes{state=\"running\",tier=\"local-test\",team=\"default\"}"]);
        Assert.Equal(1, Delta(s1, s2, "paddock_agent_calls_total{method=\"process.Start\"}"));
        Assert.True(Delta(s1, s2, "paddock_proxy_requests_total{target=\"agent\",code=\"2xx\"}") >= 1);
        Assert.True(Delta(s1, s2, "paddock_proxy_bytes_total{direction=\"in\"}") > 0);
        Assert.True(Delta(s1, s2, "paddock_proxy_bytes_total{direction=\"out\"}") > 0);
        Assert.True(Delta(s0, s2, "paddock_pool_refills_total{pool=\"base\",outcome=\"ok\"}") >= 1);
        Assert.Equal(2, Delta(s1, s2, "paddock_audit_events_total{kind=\"process.start\"}") + Delta(s1, s2, "paddock_audit_events_total{kind=\"process.end\"}"));

        // Failed creates: the runtime fails one start (the pool is full, so the next start is the create's), and an unknown template.
        await WaitForPoolAsync();
        _runtime.FailNextStart = "the runtime is broken on purpose";
        Assert.Equal(HttpStatusCode.InternalServerError, (await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base","cpuCount":1}""")).Status);
        AssertError(HttpStatusCode.BadRequest, await SendAsync(_daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"no-such-template"}"""));
        var s3 = await ScrapeAsync();
        Assert.Equal(1, Delta(s2, s3, "paddock_sandbox_creates_total{outcome=\"start_failed\",path=\"cold\"}"));
        Assert.Equal(1, Delta(s2, s3, "paddock_sandbox_creates_total{outcome=\"template_not_found\",path=\"none\"}"));
        Assert.Equal(0, Delta(s2, s3, "paddock_sandbox_create_seconds_count{path=\"cold\"}"));

        // Kills.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{pooledId}")).Status);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{coldId}")).Status);
        var s4 = await ScrapeAsync();
        Assert.Equal(2, Delta(s3, s4, "paddock_sandbox_kills_total{reason=\"api\"}"));
        Assert.False(s4.ContainsKey("paddock_sandboxes{state=\"running\",tier=\"local-test\",team=\"default\"}"));
        Assert.True(s4["paddock_host_capacity_left"] <= 100);
    }

    [Fact]
    public async Task Only_admin_keys_read_metrics_and_prometheus_bearer_credentials_work()
    {
        using (var anonymous = new HttpClient { BaseAddress = _daemon.BaseAddress })
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/metrics")).StatusCode);
            anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _daemon.ApiKey);
            using var bearer = await anonymous.GetAsync("/metrics");
            Assert.Equal(HttpStatusCode.OK, bearer.StatusCode);
            Assert.Contains("# TYPE paddock_sandbox_creates_total counter", await bearer.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        var (_, _, member) = await TenantApi.TeamWithClientAsync(_daemon);
        using (member)
        {
            AssertError(HttpStatusCode.Forbidden, await SendAsync(member, HttpMethod.Get, "/metrics"));
        }
    }
}
