using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Paddock.Daemon.Store;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Api;

/// <summary>E2B's control plane against the real daemon (in-process Kestrel) over real paddock-agent processes.</summary>
public sealed class ControlPlaneTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    private TestDaemon Daemon => fixture.Daemon;

    [Fact]
    public async Task A_create_answers_E2Bs_sandbox_shape_and_the_sandbox_can_be_read_and_killed()
    {
        var created = await CreateAsync(Daemon, """
            {"templateID":"base","timeout":120,"metadata":{"user":"ann"},"envVars":{"GREETING":"hi"},"allow_internet_access":false}
            """);
        var id = Get<string>(created, "sandboxID");
        Assert.Matches("^[a-z0-9]{20}$", id);
        Assert.Equal("base-v1", Get<string>(created, "templateID"));
        Assert.Equal("base", Get<string>(created, "alias"));
        Assert.Equal("0.6.4", Get<string>(created, "envdVersion"));
        Assert.False(string.IsNullOrEmpty(Get<string>(created, "clientID")));
        Assert.Equal($"localhost:{Daemon.Port}", Get<string>(created, "domain"));
        var token = Get<string>(created, "envdAccessToken");
        Assert.Equal(64, token.Length);
        Assert.Null(created["trafficAccessToken"]);

        var spec = fixture.Runtime.Started.Single(s => s.SandboxId == id);
        Assert.Equal(token, spec.AgentAccessToken);
        Assert.Equal("hi", spec.EnvVars["GREETING"]);
        Assert.False(spec.AllowInternetAccess);
        Assert.Equal(new Paddock.Daemon.Runtimes.ResourceLimits(2, 512L << 20, 1024, 1024L << 20), spec.Limits);
        Assert.Equal(["/nonexistent/rootfs/base"], spec.TemplateLayers);

        var (status, detail, _) = await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("running", Get<string>(detail!, "state"));
        Assert.Equal("ann", (string?)detail!["metadata"]!["user"]);
        Assert.Equal(2, Get<int>(detail, "cpuCount"));
        Assert.Equal(512, Get<int>(detail, "memoryMB"));
        Assert.Equal(token, Get<string>(detail, "envdAccessToken"));
        Assert.False(Get<bool>(detail, "allowInternetAccess"));
        var lifetime = Get<DateTimeOffset>(detail, "endAt") - Get<DateTimeOffset>(detail, "startedAt");
        Assert.Equal(TimeSpan.FromSeconds(120), lifetime);

        var killed = await SendAsync(Daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}");
        Assert.Equal(HttpStatusCode.NoContent, killed.Status);
        Assert.False(fixture.Runtime.IsAlive(id));
        var gone = AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}"));
        Assert.Contains("killed by API request", gone, StringComparison.Ordinal);
        AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}"));

        var record = await Daemon.Services.GetRequiredService<ISandboxStore>().GetAsync(id, CancellationToken.None);
        Assert.Equal(SandboxState.Killed, record!.State);
        Assert.Equal("killed by API request", record.EndReason);
    }

    [Fact]
    public async Task Secure_false_gives_no_access_token_and_the_v1_create_route_works_too()
    {
        var (status, created, _) = await SendAsync(Daemon.Api, HttpMethod.Post, "/sandboxes", """{"templateID":"base-v1","secure":false}""");
        Assert.Equal(HttpStatusCode.Created, status);
        var id = Get<string>(created!, "sandboxID");
        Assert.Null(created!["envdAccessToken"]);
        Assert.Null(created["alias"]);
        Assert.Null(fixture.Runtime.Started.Single(s => s.SandboxId == id).AgentAccessToken);
        Assert.True(await Daemon.Manager.KillAsync(id, "test cleanup"));
    }

    [Fact]
    public async Task Requests_without_a_valid_key_get_401_in_E2Bs_shape()
    {
        var missing = AssertError(HttpStatusCode.Unauthorized, await SendAsync(Daemon.Raw, HttpMethod.Get, "/v2/sandboxes"));
        Assert.Contains("X-API-Key", missing, StringComparison.Ordinal);

        using var wrong = new HttpClient { BaseAddress = Daemon.BaseAddress };
        wrong.DefaultRequestHeaders.Add("X-API-Key", "e2b_0000000000000000000000000000000000000000");
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(wrong, HttpMethod.Post, "/sandboxes", """{"templateID":"base"}"""));
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(wrong, HttpMethod.Delete, "/sandboxes/abc"));

        var health = await SendAsync(Daemon.Raw, HttpMethod.Get, "/health");
        Assert.Equal(HttpStatusCode.OK, health.Status);
        Assert.Equal("local-test", Get<string>(health.Body!, "runtime"));
    }

    [Theory]
    [InlineData("{\"templateID\":", "malformed JSON")]
    [InlineData("[1,2]", "expected a JSON object")]
    [InlineData("null", "got null")]
    [InlineData("", "body is required")]
    [InlineData("{\"templateID\":\"base\",\"timeout\":\"soon\"}", "$.timeout")]
    [InlineData("{\"templateID\":\"base\",\"timeout\":1.5}", "$.timeout")]
    [InlineData("{\"templateID\":\"base\",\"metadata\":{\"n\":1}}", "$.metadata")]
    [InlineData("{\"templateID\":\"base\",\"timeout\":-5}", "at least 0")]
    [InlineData("{\"templateID\":\"no-such-template\"}", "template 'no-such-template' not found")]
    [InlineData("{\"templateID\":42}", "$.templateID")]
    public async Task Bad_create_bodies_get_400_with_a_message_that_says_why(string body, string expected)
    {
        var before = fixture.Runtime.Started.Count;
        var message = AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, "/v2/sandboxes", body));
        Assert.Contains(expected, message, StringComparison.Ordinal);
        Assert.Equal(before, fixture.Runtime.Started.Count);
    }

    [Theory]
    [InlineData("GET", "/sandboxes/{0}", null)]
    [InlineData("DELETE", "/sandboxes/{0}", null)]
    [InlineData("POST", "/sandboxes/{0}/timeout", "{\"timeout\":10}")]
    [InlineData("POST", "/sandboxes/{0}/connect", "{\"timeout\":10}")]
    [InlineData("POST", "/v2/sandboxes/{0}/connect", "{}")]
    [InlineData("GET", "/sandboxes/{0}/metrics", null)]
    [InlineData("GET", "/sandboxes/{0}/logs", null)]
    [InlineData("GET", "/v2/sandboxes/{0}/logs", null)]
    [InlineData("POST", "/sandboxes/{0}/pause", null)]
    [InlineData("POST", "/sandboxes/{0}/fork", "{\"count\":2}")]
    [InlineData("POST", "/sandboxes/{0}/fork", null)]
    public async Task Unknown_ids_get_404(string method, string path, string? body)
    {
        foreach (var id in new[] { "doesnotexist00000000", "UPPER-and-../weird" })
        {
            var url = string.Format(System.Globalization.CultureInfo.InvariantCulture, path, Uri.EscapeDataString(id));
            var message = AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, new HttpMethod(method), url, body));
            Assert.Contains("not found", message, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Unknown_routes_get_404_and_pause_is_refused_honestly()
    {
        AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Get, "/no/such/route"));
        var id = Get<string>(await CreateAsync(Daemon), "sandboxID");
        var pause = AssertError(HttpStatusCode.NotImplemented, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/pause", "{}"));
        Assert.Contains("not supported", pause, StringComparison.Ordinal);
        AssertError(HttpStatusCode.Conflict, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/resume", "{}"));
        Assert.True(fixture.Runtime.IsAlive(id));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", "{\"timeout\":-1}"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", "{}"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", "{\"timeout\":\"x\"}"));
        Assert.True(await Daemon.Manager.KillAsync(id, "test cleanup"));
    }

    [Fact]
    public async Task A_fork_is_refused_whole_with_a_400_for_a_bad_count_or_a_tier_that_cannot_fork()
    {
        var id = Get<string>(await CreateAsync(Daemon), "sandboxID");
        var before = fixture.Runtime.Started.Count;
        foreach (var count in new[] { 0, -1, 101 })
        {
            var message = AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", $"{{\"count\":{count}}}"));
            Assert.Contains("count must be between 1 and 100", message, StringComparison.Ordinal);
        }
        AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", "{\"count\":\"x\"}"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", "{\"timeout\":-5}"));
        // This daemon's tier has no memory capture: refused whole, naming the tier; the source is untouched.
        var refused = AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/fork", "{\"count\":1}"));
        Assert.Contains($"the {fixture.Runtime.Name} isolation tier cannot fork", refused, StringComparison.Ordinal);
        Assert.Equal(before, fixture.Runtime.Started.Count);
        Assert.True(fixture.Runtime.IsAlive(id));
        Assert.True(await Daemon.Manager.KillAsync(id, "test cleanup"));
    }

    [Fact]
    public async Task Lists_filter_by_metadata_and_state_and_page_with_x_next_token()
    {
        var tag = Guid.NewGuid().ToString("N");
        var ids = new List<string>();
        foreach (var team in new[] { "a b", "a b", "c&d" })
        {
            ids.Add(Get<string>(await CreateAsync(Daemon, $$$"""{"templateID":"base","metadata":{"tag":"{{{tag}}}","team":"{{{team}}}"}}"""), "sandboxID"));
        }
        try
        {
            // Encoded as the SDK does: each key and value percent-encoded, then the query form-encoded again.
            static string SdkMetadata(params (string K, string V)[] pairs) => Uri.EscapeDataString(string.Join("&",
                pairs.Select(p => Uri.EscapeDataString(Uri.EscapeDataString(p.K)) + "=" + Uri.EscapeDataString(Uri.EscapeDataString(p.V)))));

            var (status, page, response) = await SendAsync(Daemon.Api, HttpMethod.Get, $"/v2/sandboxes?metadata={SdkMetadata(("tag", tag), ("team", "a b"))}");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(ids.Take(2).Order(), page!.AsArray().Select(s => Get<string>(s!, "sandboxID")).Order());
            Assert.Equal("2", response.Headers.GetValues("X-Total-Running").Single());
            Assert.False(response.Headers.Contains("X-Next-Token"));
            Assert.All(page.AsArray(), s => Assert.Equal("running", Get<string>(s!, "state")));

            var v1 = await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes?metadata={SdkMetadata(("team", "c&d"), ("tag", tag))}");
            Assert.Equal([ids[2]], v1.Body!.AsArray().Select(s => Get<string>(s!, "sandboxID")));

            var paused = await SendAsync(Daemon.Api, HttpMethod.Get, $"/v2/sandboxes?state=paused&metadata={SdkMetadata(("tag", tag))}");
            Assert.Empty(paused.Body!.AsArray());

            var seen = new List<string>();
            string? next = null;
            for (var i = 0; i < 10; i++)
            {
                var url = $"/v2/sandboxes?state=running,paused&limit=1&metadata={SdkMetadata(("tag", tag))}" + (next is null ? "" : "&nextToken=" + Uri.EscapeDataString(next));
                var result = await SendAsync(Daemon.Api, HttpMethod.Get, url);
                Assert.Equal(HttpStatusCode.OK, result.Status);
                seen.AddRange(result.Body!.AsArray().Select(s => Get<string>(s!, "sandboxID")));
                next = result.Response.Headers.TryGetValues("X-Next-Token", out var values) ? values.Single() : null;
                if (next is null)
                {
                    break;
                }
            }
            Assert.Equal(ids.Order(), seen.Order());

            AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Get, "/v2/sandboxes?state=sleeping"));
            AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Get, "/v2/sandboxes?limit=0"));
            AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Get, "/v2/sandboxes?nextToken=garbage!"));
        }
        finally
        {
            foreach (var id in ids)
            {
                await Daemon.Manager.KillAsync(id, "test cleanup");
            }
        }
    }

    [Fact]
    public async Task A_sandbox_is_killed_at_its_timeout_and_its_log_says_so()
    {
        var id = Get<string>(await CreateAsync(Daemon, """{"templateID":"base","timeout":1}"""), "sandboxID");
        var message = await WaitUntilGoneAsync(Daemon, id, TimeSpan.FromSeconds(30));
        Assert.Contains("timed out", message, StringComparison.Ordinal);
        Assert.False(fixture.Runtime.IsAlive(id));

        var (status, logs, _) = await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/logs");
        Assert.Equal(HttpStatusCode.OK, status);
        var lines = logs!["logs"]!.AsArray().Select(l => Get<string>(l!, "line")).ToList();
        Assert.Contains(lines, l => l.StartsWith("creating from template base-v1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("started by local-test", StringComparison.Ordinal));
        Assert.Contains(lines, l => l == "killed: timed out");
        Assert.Equal(lines.Count, logs["logEntries"]!.AsArray().Count);
    }

    [Fact]
    public async Task Post_timeout_moves_the_deadline_both_ways()
    {
        var id = Get<string>(await CreateAsync(Daemon, """{"templateID":"base","timeout":2}"""), "sandboxID");
        var before = DateTimeOffset.UtcNow;
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", """{"timeout":600}""")).Status);
        var endAt = Get<DateTimeOffset>((await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "endAt");
        Assert.InRange(endAt, before.AddSeconds(599), DateTimeOffset.UtcNow.AddSeconds(601));
        var stored = await Daemon.Services.GetRequiredService<ISandboxStore>().GetAsync(id, CancellationToken.None);
        Assert.Equal(endAt.ToUnixTimeMilliseconds(), stored!.EndAt.ToUnixTimeMilliseconds());

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/timeout", """{"timeout":1}""")).Status);
        Assert.Contains("timed out", await WaitUntilGoneAsync(Daemon, id, TimeSpan.FromSeconds(30)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Connect_returns_the_sandbox_and_only_ever_extends_its_deadline()
    {
        var created = await CreateAsync(Daemon, """{"templateID":"base","timeout":300}""");
        var id = Get<string>(created, "sandboxID");
        var endAt = Get<DateTimeOffset>((await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "endAt");

        var shorter = await SendAsync(Daemon.Api, HttpMethod.Post, $"/v2/sandboxes/{id}/connect", """{"timeout":10}""");
        Assert.Equal(HttpStatusCode.OK, shorter.Status);
        Assert.Equal(Get<string>(created, "envdAccessToken"), Get<string>(shorter.Body!, "envdAccessToken"));
        Assert.Equal(id, Get<string>(shorter.Body!, "sandboxID"));
        Assert.Equal(endAt, Get<DateTimeOffset>((await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "endAt"));

        var longer = await SendAsync(Daemon.Api, HttpMethod.Post, $"/sandboxes/{id}/connect", """{"timeout":3000}""");
        Assert.Equal(HttpStatusCode.OK, longer.Status);
        Assert.True(Get<DateTimeOffset>((await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}")).Body!, "endAt") > endAt.AddSeconds(2000));
        Assert.True(await Daemon.Manager.KillAsync(id, "test cleanup"));
    }

    [Fact]
    public async Task Metrics_come_from_the_runtime_and_logs_filter_by_level()
    {
        var id = Get<string>(await CreateAsync(Daemon, """{"templateID":"base","autoPause":true}"""), "sandboxID");
        try
        {
            var (status, metrics, _) = await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/metrics");
            Assert.Equal(HttpStatusCode.OK, status);
            // The history's samples (a sweep every 5 s), then the one of now that the request took.
            var samples = metrics!.AsArray();
            Assert.NotEmpty(samples);
            var sample = samples[^1]!;
            Assert.True(Get<long>(sample, "memUsed") > 0);
            Assert.Equal(512L << 20, Get<long>(sample, "memTotal"));
            Assert.True(Get<long>(sample, "timestampUnix") > 1_700_000_000);

            var many = await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/metrics?sandbox_ids={id},doesnotexist00000000");
            Assert.Equal(HttpStatusCode.OK, many.Status);
            Assert.NotNull(many.Body!["sandboxes"]![id]);
            Assert.Null(many.Body["sandboxes"]!["doesnotexist00000000"]);
            AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}/metrics?start=10&end=5"));

            var warnings = await SendAsync(Daemon.Api, HttpMethod.Get, $"/v2/sandboxes/{id}/logs?level=warn");
            var entries = warnings.Body!["logs"]!.AsArray();
            Assert.Contains(entries, e => Get<string>(e!, "message").Contains("autoPause", StringComparison.Ordinal));
            Assert.All(entries, e => Assert.Contains(Get<string>(e!, "level"), new[] { "warn", "error" }));

            var search = await SendAsync(Daemon.Api, HttpMethod.Get, $"/v2/sandboxes/{id}/logs?search=started%20by&direction=backward&limit=1");
            Assert.Single(search.Body!["logs"]!.AsArray());
        }
        finally
        {
            await Daemon.Manager.KillAsync(id, "test cleanup");
        }
    }

    [Fact]
    public async Task A_failed_start_answers_500_and_leaves_a_killed_record_with_the_reason()
    {
        fixture.Runtime.FailNextStart = "simulated runtime failure";
        var message = AssertError(HttpStatusCode.InternalServerError, await SendAsync(Daemon.Api, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}"""));
        Assert.Contains("simulated runtime failure", message, StringComparison.Ordinal);
        var id = fixture.Runtime.Started.Last().SandboxId;
        var record = await Daemon.Services.GetRequiredService<ISandboxStore>().GetAsync(id, CancellationToken.None);
        Assert.Equal(SandboxState.Killed, record!.State);
        Assert.Contains("simulated runtime failure", record.EndReason, StringComparison.Ordinal);
        AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}"));
    }

    [Fact]
    public async Task Concurrent_creates_each_get_their_own_sandbox()
    {
        var tag = Guid.NewGuid().ToString("N");
        var creates = Enumerable.Range(0, 4).Select(_ => CreateAsync(Daemon, $$$"""{"templateID":"base","metadata":{"tag":"{{{tag}}}"}}""")).ToList();
        var results = await Task.WhenAll(creates).WaitAsync(TimeSpan.FromSeconds(120));
        var ids = results.Select(r => Get<string>(r, "sandboxID")).ToList();
        try
        {
            Assert.Equal(4, ids.Distinct().Count());
            Assert.Equal(4, results.Select(r => Get<string>(r, "envdAccessToken")).Distinct().Count());
            var listed = await SendAsync(Daemon.Api, HttpMethod.Get, $"/v2/sandboxes?metadata={Uri.EscapeDataString("tag=" + tag)}");
            Assert.Equal(ids.Order(), listed.Body!.AsArray().Select(s => Get<string>(s!, "sandboxID")).Order());
            Assert.All(ids, id => Assert.True(fixture.Runtime.IsAlive(id)));
        }
        finally
        {
            foreach (var id in ids)
            {
                await Daemon.Manager.KillAsync(id, "test cleanup");
            }
        }
    }
}
