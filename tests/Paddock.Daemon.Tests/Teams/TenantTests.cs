using System.Net;
using System.Text.Json.Nodes;
using Paddock.Daemon.Tests.Api;
using static Paddock.Daemon.Tests.Api.ApiClient;
using static Paddock.Daemon.Tests.Teams.TenantApi;

namespace Paddock.Daemon.Tests.Teams;

/// <summary>Teams against the real daemon over real agents: ownership, key revocation and per-team limits.</summary>
public sealed class TenantTests(DaemonFixture fixture) : IClassFixture<DaemonFixture>
{
    private TestDaemon Daemon => fixture.Daemon;

    [Fact]
    public async Task Two_teams_cannot_see_or_touch_each_others_sandboxes()
    {
        var (_, _, a) = await TeamWithClientAsync(Daemon);
        var (_, _, b) = await TeamWithClientAsync(Daemon);
        using (a)
        using (b)
        {
            var id = await CreateSandboxAsync(a);
            var unknown = "zz" + id[2..];
            Assert.NotEqual(id, unknown);
            var mine = await CreateSandboxAsync(b);

            // Every route that names a sandbox answers B exactly as it answers an id nobody ever had.
            var routes = new (HttpMethod Method, string Path, string? Body)[]
            {
                (HttpMethod.Get, "/sandboxes/{0}", null),
                (HttpMethod.Post, "/sandboxes/{0}/timeout", """{"timeout":60}"""),
                (HttpMethod.Post, "/sandboxes/{0}/connect", """{"timeout":60}"""),
                (HttpMethod.Post, "/v2/sandboxes/{0}/connect", """{"timeout":60}"""),
                (HttpMethod.Post, "/sandboxes/{0}/refreshes", null),
                (HttpMethod.Get, "/sandboxes/{0}/metrics", null),
                (HttpMethod.Get, "/sandboxes/{0}/logs", null),
                (HttpMethod.Get, "/v2/sandboxes/{0}/logs", null),
                (HttpMethod.Post, "/sandboxes/{0}/pause", null),
                (HttpMethod.Post, "/sandboxes/{0}/resume", null),
                (HttpMethod.Delete, "/sandboxes/{0}", null),
            };
            foreach (var (method, path, body) in routes)
            {
                var theirs = AssertError(HttpStatusCode.NotFound, await SendAsync(b, method, string.Format(path, id), body));
                var nobodys = AssertError(HttpStatusCode.NotFound, await SendAsync(b, method, string.Format(path, unknown), body));
                Assert.Equal(nobodys.Replace(unknown, "ID", StringComparison.Ordinal), theirs.Replace(id, "ID", StringComparison.Ordinal));
            }
            Assert.True(fixture.Runtime.IsAlive(id), "B's DELETE must not have killed A's sandbox");

            Assert.DoesNotContain(id, await ListIdsAsync(b, "/v2/sandboxes"));
            Assert.DoesNotContain(id, await ListIdsAsync(b, "/sandboxes"));
            Assert.Contains(mine, await ListIdsAsync(b, "/v2/sandboxes"));
            var (_, _, response) = await SendAsync(b, HttpMethod.Get, "/v2/sandboxes");
            Assert.Equal("1", response.Headers.GetValues("X-Total-Running").Single());
            var metrics = (await SendAsync(b, HttpMethod.Get, $"/sandboxes/metrics?sandbox_ids={id},{mine}")).Body!["sandboxes"]!.AsObject();
            Assert.Equal([mine], metrics.Select(kv => kv.Key));

            Assert.Contains(id, await ListIdsAsync(a, "/v2/sandboxes"));
            Assert.DoesNotContain(mine, await ListIdsAsync(a, "/v2/sandboxes"));
            // Nor does the admin team see other teams' sandboxes in the sandbox API.
            Assert.DoesNotContain(id, await ListIdsAsync(Daemon.Api, "/v2/sandboxes"));
            AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Get, $"/sandboxes/{id}"));

            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(a, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
            // Once ended, A is told what became of it; B still hears only "not found".
            Assert.Contains("killed by API request", AssertError(HttpStatusCode.NotFound, await SendAsync(a, HttpMethod.Get, $"/sandboxes/{id}")), StringComparison.Ordinal);
            Assert.Equal($"sandbox '{id}' not found", AssertError(HttpStatusCode.NotFound, await SendAsync(b, HttpMethod.Get, $"/sandboxes/{id}")));
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(a, HttpMethod.Get, $"/sandboxes/{id}/logs")).Status);
            AssertError(HttpStatusCode.NotFound, await SendAsync(b, HttpMethod.Get, $"/sandboxes/{id}/logs"));
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(b, HttpMethod.Delete, $"/sandboxes/{mine}")).Status);
        }
    }

    [Fact]
    public async Task A_revoked_key_is_refused_on_the_next_request()
    {
        var team = await CreateTeamAsync(Daemon, UniqueName("revoke"));
        var (key, keyId) = await CreateKeyAsync(Daemon, team, "to revoke");
        var (spare, _) = await CreateKeyAsync(Daemon, team, "spare");
        using var client = ClientFor(Daemon, key);
        using var other = ClientFor(Daemon, spare);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, HttpMethod.Get, "/v2/sandboxes")).Status);

        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(other, HttpMethod.Delete, $"/api-keys/{keyId}")).Status);
        var refused = AssertError(HttpStatusCode.Unauthorized, await SendAsync(client, HttpMethod.Get, "/v2/sandboxes"));
        Assert.Equal("invalid API key", refused);
        AssertError(HttpStatusCode.NotFound, await SendAsync(other, HttpMethod.Delete, $"/api-keys/{keyId}"));
        var listed = (await SendAsync(other, HttpMethod.Get, "/api-keys")).Body!.AsArray();
        Assert.DoesNotContain(listed, k => Get<string>(k!, "id") == keyId);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(other, HttpMethod.Get, "/v2/sandboxes")).Status);

        // A key can revoke itself, and the admin route revokes any team's key.
        var (third, thirdId) = await CreateKeyAsync(Daemon, team, "third");
        using var thirdClient = ClientFor(Daemon, third);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(thirdClient, HttpMethod.Delete, $"/api-keys/{thirdId}")).Status);
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(thirdClient, HttpMethod.Get, "/api-keys"));
        var spareId = Get<string>(listed.Single(k => Get<string>(k!, "name") == "spare")!, "id");
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(Daemon.Api, HttpMethod.Delete, $"/admin/teams/{team}/api-keys/{spareId}")).Status);
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(other, HttpMethod.Get, "/v2/sandboxes"));
    }

    [Theory]
    [InlineData("\"maxSandboxes\":1", """{"templateID":"base"}""", "maxSandboxes")]
    [InlineData("\"maxCpus\":3", """{"templateID":"base","cpuCount":2}""", "maxCpus")]
    [InlineData("\"maxMemoryMB\":768", """{"templateID":"base","memoryMB":512}""", "maxMemoryMB")]
    public async Task A_create_past_a_team_limit_answers_429_naming_it_and_a_kill_frees_the_slot(string limit, string create, string name)
    {
        var (team, _, client) = await TeamWithClientAsync(Daemon, limit);
        using (client)
        {
            var first = await CreateSandboxAsync(client, create);
            var refused = AssertError(HttpStatusCode.TooManyRequests, await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", create));
            Assert.Contains(name, refused, StringComparison.Ordinal);
            Assert.Contains(team, refused, StringComparison.Ordinal);
            // Another team is not held back by this one's limit.
            var others = await CreateSandboxAsync(Daemon.Api, create);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(Daemon.Api, HttpMethod.Delete, $"/sandboxes/{others}")).Status);

            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{first}")).Status);
            var second = await CreateSandboxAsync(client, create);
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{second}")).Status);
        }
    }

    [Fact]
    public async Task Racing_creates_never_pass_the_team_limit_and_a_failed_start_gives_its_slot_back()
    {
        var (team, _, client) = await TeamWithClientAsync(Daemon, "\"maxSandboxes\":2");
        using (client)
        {
            var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => SendAsync(client, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""")));
            Assert.Equal(2, results.Count(r => r.Status == HttpStatusCode.Created));
            Assert.Equal(4, results.Count(r => r.Status == HttpStatusCode.TooManyRequests));
            var teams = (await SendAsync(Daemon.Api, HttpMethod.Get, "/teams")).Body!.AsArray();
            var usage = teams.Single(t => Get<string>(t!, "teamID") == team)!["usage"]!;
            Assert.Equal(2, Get<int>(usage, "sandboxes"));
            Assert.Equal(4, Get<int>(usage, "cpus"));
            await KillAllAsync(client);

            fixture.Runtime.FailNextStart = "injected start failure";
            AssertError(HttpStatusCode.InternalServerError, await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}"""));
            var a = await CreateSandboxAsync(client);
            var b = await CreateSandboxAsync(client);
            Assert.NotEqual(a, b);
            await KillAllAsync(client);
            teams = (await SendAsync(Daemon.Api, HttpMethod.Get, "/teams")).Body!.AsArray();
            Assert.Equal(0, Get<int>(teams.Single(t => Get<string>(t!, "teamID") == team)!["usage"]!, "sandboxes"));
        }
    }

    [Fact]
    public async Task Limits_change_at_run_time_and_null_removes_one()
    {
        var (team, _, client) = await TeamWithClientAsync(Daemon, "\"maxSandboxes\":0");
        using (client)
        {
            Assert.Contains("maxSandboxes", AssertError(HttpStatusCode.TooManyRequests, await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base"}""")), StringComparison.Ordinal);
            var (status, patched, _) = await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxSandboxes":null,"maxCpus":2}""");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Null(patched!["limits"]!["maxSandboxes"]);
            Assert.Equal(2, Get<int>(patched["limits"]!, "maxCpus"));
            var id = await CreateSandboxAsync(client);
            Assert.Contains("maxCpus", AssertError(HttpStatusCode.TooManyRequests, await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", """{"templateID":"base","cpuCount":1}""")), StringComparison.Ordinal);
            // A patch that leaves a limit out keeps it.
            (status, patched, _) = await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxMemoryMB":4096}""");
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(2, Get<int>(patched!["limits"]!, "maxCpus"));
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        }
    }

    [Fact]
    public async Task The_paused_sandbox_limit_is_set_kept_and_cleared_through_the_team_api()
    {
        var (team, _, client) = await TeamWithClientAsync(Daemon, "\"maxPausedSandboxes\":3");
        using (client)
        {
            var (status, teams, _) = await SendAsync(client, HttpMethod.Get, "/teams");
            Assert.Equal(HttpStatusCode.OK, status);
            var own = Assert.Single(teams!.AsArray());
            Assert.Equal(3, Get<int>(own!["limits"]!, "maxPausedSandboxes"));
            Assert.Equal(0, Get<int>(own["usage"]!, "pausedSandboxes"));

            // A patch that names another limit keeps this one (it used to be dropped: the limit was unreachable).
            var (patchStatus, patched, _) = await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxCpus":4}""");
            Assert.Equal(HttpStatusCode.OK, patchStatus);
            Assert.Equal(3, Get<int>(patched!["limits"]!, "maxPausedSandboxes"));
            foreach (var bad in new[] { "-1", "1.5", "\"2\"", "true", "2147483648" })
            {
                Assert.Contains("maxPausedSandboxes", AssertError(HttpStatusCode.BadRequest,
                    await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", $$"""{"maxPausedSandboxes":{{bad}}}""")), StringComparison.Ordinal);
            }
            Assert.Equal(3, Get<int>((await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!["limits"]!, "maxPausedSandboxes"));
            (patchStatus, patched, _) = await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxPausedSandboxes":null}""");
            Assert.Equal(HttpStatusCode.OK, patchStatus);
            Assert.Null(patched!["limits"]!["maxPausedSandboxes"]);
        }
    }

    [Fact]
    public async Task The_keys_api_validates_its_input_and_shows_a_key_once()
    {
        var (team, keyId, client) = await TeamWithClientAsync(Daemon);
        using (client)
        {
            foreach (var body in new[] { "", "{}", """{"name":""}""", """{"name":"   "}""", $$"""{"name":"{{new string('k', 101)}}"}""", """{"name":"a\u0001b"}""", """{"name":5}""", "[]", "{" })
            {
                AssertError(HttpStatusCode.BadRequest, await SendAsync(client, HttpMethod.Post, "/api-keys", body));
                AssertError(HttpStatusCode.BadRequest, await SendAsync(client, HttpMethod.Patch, $"/api-keys/{keyId}", body));
            }
            var unknownKey = Guid.NewGuid().ToString();
            foreach (var id in new[] { unknownKey, "not-a-key-id", "..%2F..%2Fteams" })
            {
                AssertError(HttpStatusCode.NotFound, await SendAsync(client, HttpMethod.Patch, $"/api-keys/{id}", """{"name":"x"}"""));
                AssertError(HttpStatusCode.NotFound, await SendAsync(client, HttpMethod.Delete, $"/api-keys/{id}"));
            }

            var (status, created, _) = await SendAsync(client, HttpMethod.Post, "/api-keys", """{"name":"  ci runner  "}""");
            Assert.Equal(HttpStatusCode.Created, status);
            var key = Get<string>(created!, "key");
            Assert.Matches("^e2b_[0-9a-f]{40}$", key);
            Assert.Equal("ci runner", Get<string>(created!, "name"));
            Assert.Equal("e2b_", Get<string>(created!["mask"]!, "prefix"));
            Assert.Equal(40, Get<int>(created["mask"]!, "valueLength"));
            Assert.Equal(key[^4..], Get<string>(created["mask"]!, "maskedValueSuffix"));
            var newId = Get<string>(created, "id");
            Assert.True(Guid.TryParse(newId, out _));

            Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, HttpMethod.Patch, $"/api-keys/{newId}", """{"name":"renamed"}""")).Status);
            var (listStatus, list, listResponse) = await SendAsync(client, HttpMethod.Get, "/api-keys");
            Assert.Equal(HttpStatusCode.OK, listStatus);
            Assert.Equal(new[] { keyId, newId }.Order(), list!.AsArray().Select(k => Get<string>(k!, "id")).Order());
            Assert.Equal("renamed", Get<string>(list.AsArray().Single(k => Get<string>(k!, "id") == newId)!, "name"));
            // Listing never shows a key again, and the key that made the request has been seen.
            Assert.DoesNotContain(key, await listResponse.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.All(list.AsArray(), k => Assert.Null(k!["key"]));
            Assert.NotNull(list.AsArray().Single(k => Get<string>(k!, "id") == keyId)!["lastUsed"]);

            // Another team's key id is unknown to this team.
            var adminKeys = (await SendAsync(Daemon.Api, HttpMethod.Get, "/api-keys")).Body!.AsArray();
            var adminKeyId = Get<string>(adminKeys[0]!, "id");
            AssertError(HttpStatusCode.NotFound, await SendAsync(client, HttpMethod.Delete, $"/api-keys/{adminKeyId}"));
            AssertError(HttpStatusCode.NotFound, await SendAsync(client, HttpMethod.Patch, $"/api-keys/{adminKeyId}", """{"name":"mine now"}"""));

            // Admin routes: 403 for a non-admin key whatever the team, 404 for an unknown team for an admin.
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Post, $"/admin/teams/{team}/api-keys", """{"name":"x"}"""));
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Post, "/admin/teams/nosuchteam/api-keys", """{"name":"x"}"""));
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Get, $"/admin/teams/{team}/api-keys"));
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Delete, $"/admin/teams/{team}/api-keys/{keyId}"));
            AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Post, "/admin/teams/nosuchteam/api-keys", """{"name":"x"}"""));
            var adminList = (await SendAsync(Daemon.Api, HttpMethod.Get, $"/admin/teams/{team}/api-keys")).Body!.AsArray();
            Assert.Equal(2, adminList.Count);
        }
    }

    [Fact]
    public async Task Teams_are_managed_by_admin_keys_only_and_validated()
    {
        var (team, _, client) = await TeamWithClientAsync(Daemon, "\"maxSandboxes\":3,\"maxCpus\":8,\"maxMemoryMB\":4096");
        using (client)
        {
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Post, "/teams", """{"name":"sneaky"}"""));
            AssertError(HttpStatusCode.Forbidden, await SendAsync(client, HttpMethod.Patch, $"/teams/{team}", """{"maxSandboxes":100}"""));
            var own = (await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray();
            var only = Assert.Single(own);
            Assert.Equal(team, Get<string>(only!, "teamID"));
            Assert.True(Get<bool>(only!, "isDefault"));
            Assert.False(Get<bool>(only!, "isAdmin"));
            Assert.Equal(3, Get<int>(only!["limits"]!, "maxSandboxes"));
            Assert.Equal(8, Get<int>(only["limits"]!, "maxCpus"));
            Assert.Equal(4096, Get<int>(only["limits"]!, "maxMemoryMB"));
            Assert.Equal("", Get<string>(only, "apiKey"));

            var all = (await SendAsync(Daemon.Api, HttpMethod.Get, "/teams")).Body!.AsArray();
            Assert.Contains(all, t => Get<string>(t!, "teamID") == team && !Get<bool>(t!, "isDefault"));
            Assert.Contains(all, t => Get<string>(t!, "teamID") == "default" && Get<bool>(t!, "isDefault") && Get<bool>(t!, "isAdmin"));

            foreach (var body in new[] { "{}", """{"name":""}""", """{"name":"has space"}""", """{"name":"x","maxCpus":-1}""", """{"name":"x","maxCpus":"4"}""",
                """{"name":"x","maxSandboxes":1.5}""", """{"name":"x","maxMemoryMB":1000001}""", $$"""{"name":"{{new string('t', 65)}}"}""" })
            {
                AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Post, "/teams", body));
            }
            var name = (string)(await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!["name"]!;
            Assert.Contains(name, AssertError(HttpStatusCode.Conflict, await SendAsync(Daemon.Api, HttpMethod.Post, "/teams", $$"""{"name":"{{name}}"}""")), StringComparison.Ordinal);
            AssertError(HttpStatusCode.NotFound, await SendAsync(Daemon.Api, HttpMethod.Patch, "/teams/nosuchteam", """{"maxSandboxes":1}"""));
            AssertError(HttpStatusCode.BadRequest, await SendAsync(Daemon.Api, HttpMethod.Patch, $"/teams/{team}", """{"maxSandboxes":-5}"""));
            var unchanged = (await SendAsync(client, HttpMethod.Get, "/teams")).Body!.AsArray()[0]!;
            Assert.Equal(3, Get<int>(unchanged["limits"]!, "maxSandboxes"));

            // The admin team's last key cannot be revoked: nobody could manage teams afterwards.
            var adminKeys = (await SendAsync(Daemon.Api, HttpMethod.Get, "/api-keys")).Body!.AsArray();
            var adminKey = Assert.Single(adminKeys);
            AssertError(HttpStatusCode.Conflict, await SendAsync(Daemon.Api, HttpMethod.Delete, $"/api-keys/{Get<string>(adminKey!, "id")}"));
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(Daemon.Api, HttpMethod.Get, "/api-keys")).Status);
        }
    }

    private static async Task<List<string>> ListIdsAsync(HttpClient client, string path)
    {
        var (status, body, _) = await SendAsync(client, HttpMethod.Get, path);
        Assert.Equal(HttpStatusCode.OK, status);
        return [.. body!.AsArray().Select(s => Get<string>(s!, "sandboxID"))];
    }

    private static async Task KillAllAsync(HttpClient client)
    {
        foreach (var id in await ListIdsAsync(client, "/v2/sandboxes"))
        {
            Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{id}")).Status);
        }
    }
}
