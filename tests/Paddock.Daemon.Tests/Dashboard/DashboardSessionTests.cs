using System.Net;
using System.Net.WebSockets;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using Paddock.Daemon.Tests.Teams;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Dashboard;

/// <summary>
/// The dashboard's sign-in over plain HTTP against the real daemon and real agents: the cookie's attributes, the CSRF
/// check on every call that changes something, the team scope of the list, the terminal's origin check, revocation.
/// </summary>
public sealed class DashboardSessionTests : IAsyncLifetime
{
    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();
    private TestDaemon _daemon = null!;

    public async Task InitializeAsync() => _daemon = await TestDaemon.StartAsync(_runtime, _state.Path);

    public async Task DisposeAsync()
    {
        await _daemon.DisposeAsync();
        await _runtime.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }

    private readonly CookieContainer _cookies = new();

    private HttpClient CookieClient(CookieContainer? cookies = null) =>
        new(new HttpClientHandler { CookieContainer = cookies ?? new CookieContainer(), UseCookies = true }) { BaseAddress = _daemon.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

    /// <summary>As <see cref="ApiClient.SendAsync"/>, with the dashboard's CSRF header when <paramref name="csrf"/> is given.</summary>
    private static async Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response)> SendAsync(
        HttpClient client, HttpMethod method, string path, string? json = null, string? csrf = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = Json(json);
        }
        if (csrf is not null)
        {
            request.Headers.Add("X-Paddock-Csrf", csrf);
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var response = await client.SendAsync(request, timeout.Token);
        var text = await response.Content.ReadAsStringAsync(timeout.Token);
        return (response.StatusCode, text.Length == 0 ? null : System.Text.Json.Nodes.JsonNode.Parse(text), response);
    }

    private static async Task<string> SignInAsync(HttpClient client, string key)
    {
        var (status, body, response) = await SendAsync(client, HttpMethod.Post, "/dashboard/api/session", $$"""{"apiKey":"{{key}}"}""");
        Assert.True(status == HttpStatusCode.OK, $"sign-in answered {(int)status}: {body?.ToJsonString()}");
        var cookie = Assert.Single(response.Headers.GetValues("Set-Cookie"));
        Assert.StartsWith("paddock_session=", cookie, StringComparison.Ordinal);
        Assert.Contains("httponly", cookie, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("samesite=strict", cookie, StringComparison.OrdinalIgnoreCase);
        return Get<string>(body!, "csrf");
    }

    [Fact]
    public async Task A_session_acts_for_its_key_and_team_and_needs_the_csrf_token_to_change_anything()
    {
        var team = await TenantApi.CreateTeamAsync(_daemon, TenantApi.UniqueName("dash"));
        var (key, keyId) = await TenantApi.CreateKeyAsync(_daemon, team);
        using var teamApi = TenantApi.ClientFor(_daemon, key);
        var mine = await TenantApi.CreateSandboxAsync(teamApi, """{"templateID":"base","timeout":120,"metadata":{"purpose":"dash"}}""");
        var theirs = Get<string>(await CreateAsync(_daemon, """{"templateID":"base","timeout":120}"""), "sandboxID");

        using var page = CookieClient(_cookies);
        // Not signed in: the pages load, the API does not answer.
        var index = await page.GetAsync("/dashboard/");
        Assert.Equal(HttpStatusCode.OK, index.StatusCode);
        Assert.Contains("default-src 'self'", index.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await page.GetAsync("/dashboard/lib/xterm.js")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await page.GetAsync("/dashboard/lib/uPlot.iife.min.js")).StatusCode);
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes"));
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(page, HttpMethod.Post, "/dashboard/api/session", """{"apiKey":"e2b_wrong"}"""));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(page, HttpMethod.Post, "/dashboard/api/session", "{not json"));

        var csrf = await SignInAsync(page, key);
        var (_, list, _) = await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes");
        Assert.Equal([mine], list!.AsArray().Select(s => (string)s!["sandboxID"]!).ToArray());
        // The ordinary API answers the cookie too, within the team.
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(page, HttpMethod.Get, $"/sandboxes/{mine}")).Status);
        AssertError(HttpStatusCode.NotFound, await SendAsync(page, HttpMethod.Get, $"/sandboxes/{theirs}"));
        AssertError(HttpStatusCode.NotFound, await SendAsync(page, HttpMethod.Delete, $"/dashboard/api/sandboxes/{theirs}", null, csrf));
        // Filters.
        Assert.Single((await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes?metadata=purpose=dash&state=running")).Body!.AsArray());
        Assert.Empty((await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes?metadata=purpose=other")).Body!.AsArray());
        AssertError(HttpStatusCode.BadRequest, await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes?state=asleep"));

        // Without the CSRF header a cookie changes nothing, on the dashboard's calls and the API's alike.
        AssertError(HttpStatusCode.Forbidden, await SendAsync(page, HttpMethod.Delete, $"/dashboard/api/sandboxes/{mine}"));
        AssertError(HttpStatusCode.Forbidden, await SendAsync(page, HttpMethod.Delete, $"/sandboxes/{mine}"));
        AssertError(HttpStatusCode.Forbidden, await SendAsync(page, HttpMethod.Post, $"/dashboard/api/sandboxes/{mine}/timeout", """{"timeout":600}""", "wrong"));
        Assert.True(_daemon.Manager.TryGetRunning(mine, out _));
        // A terminal from another origin is refused before any shell starts.
        using (var socket = new ClientWebSocket())
        {
            socket.Options.Cookies = _cookies;
            socket.Options.SetRequestHeader("Origin", "http://evil.example");
            var ws = new UriBuilder(_daemon.BaseAddress) { Scheme = "ws", Path = $"/dashboard/api/sandboxes/{mine}/terminal", Query = $"csrf={csrf}" }.Uri;
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(ws, timeout.Token));
        }

        // With it: extend, upload, list, download, kill.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(page, HttpMethod.Post, $"/dashboard/api/sandboxes/{mine}/timeout", """{"timeout":600}""", csrf)).Status);
        Assert.True(_daemon.Manager.GetRunning(mine).EndAt > DateTimeOffset.UtcNow.AddSeconds(500));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(page, HttpMethod.Post, $"/dashboard/api/sandboxes/{mine}/timeout", """{"timeout":0}""", csrf));
        var dir = Path.Combine(_state.Path, "files");
        Directory.CreateDirectory(dir);
        using (var upload = new HttpRequestMessage(HttpMethod.Post, $"/dashboard/api/sandboxes/{mine}/files/content?path={Uri.EscapeDataString(dir + "/up.txt")}") { Content = new ByteArrayContent("uploaded"u8.ToArray()) })
        {
            upload.Headers.Add("X-Paddock-Csrf", csrf);
            Assert.Equal(HttpStatusCode.OK, (await page.SendAsync(upload)).StatusCode);
        }
        var (_, files, _) = await SendAsync(page, HttpMethod.Get, $"/dashboard/api/sandboxes/{mine}/files?path={Uri.EscapeDataString(dir)}");
        Assert.Contains(files!.AsArray(), f => (string)f!["name"]! == "up.txt" && (long)f["size"]! == 8);
        Assert.Equal("uploaded", await page.GetStringAsync($"/dashboard/api/sandboxes/{mine}/files/content?path={Uri.EscapeDataString(dir + "/up.txt")}"));
        AssertError(HttpStatusCode.BadRequest, await SendAsync(page, HttpMethod.Get, $"/dashboard/api/sandboxes/{mine}/files?path=relative"));
        AssertError(HttpStatusCode.NotFound, await SendAsync(page, HttpMethod.Get, $"/dashboard/api/sandboxes/{mine}/files?path={Uri.EscapeDataString(dir + "/absent")}"));
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(page, HttpMethod.Delete, $"/dashboard/api/sandboxes/{mine}", null, csrf)).Status);
        Assert.False(_daemon.Manager.TryGetRunning(mine, out _));

        // The key revoked: its session ends with it.
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/admin/teams/{team}/api-keys/{keyId}")).Status);
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(page, HttpMethod.Get, "/dashboard/api/sandboxes"));
        AssertError(HttpStatusCode.Unauthorized, await SendAsync(page, HttpMethod.Get, "/dashboard/api/session"));

        // The admin (the daemon's first key) sees every team's sandboxes.
        using var admin = CookieClient();
        await SignInAsync(admin, _daemon.ApiKey);
        var all = (await SendAsync(admin, HttpMethod.Get, "/dashboard/api/sandboxes")).Body!.AsArray();
        Assert.Contains(all, s => (string)s!["sandboxID"]! == theirs && (bool)s["ownTeam"]!);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(_daemon.Api, HttpMethod.Delete, $"/sandboxes/{theirs}")).Status);
    }
}
