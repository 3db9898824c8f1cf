using System.Net;
using Paddock.Daemon.Tests.Api;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Teams;

/// <summary>Makes teams and keys through the API with the daemon's admin key, as an operator would.</summary>
internal static class TenantApi
{
    public static string UniqueName(string prefix) => $"{prefix}-{Guid.NewGuid():N}"[..(prefix.Length + 13)];

    /// <summary>Creates a team (limits as JSON members, e.g. <c>"maxSandboxes":1</c>) and returns its id.</summary>
    public static async Task<string> CreateTeamAsync(TestDaemon daemon, string name, string limits = "")
    {
        var body = limits.Length == 0 ? $$"""{"name":"{{name}}"}""" : $$"""{"name":"{{name}}",{{limits}}}""";
        var (status, team, _) = await SendAsync(daemon.Api, HttpMethod.Post, "/teams", body);
        Assert.True(status == HttpStatusCode.Created, $"team create answered {(int)status}: {team?.ToJsonString()}");
        return Get<string>(team!, "teamID");
    }

    /// <summary>Makes a key for a team with the admin route; returns the key and its id.</summary>
    public static async Task<(string Key, string Id)> CreateKeyAsync(TestDaemon daemon, string teamId, string name = "test key")
    {
        var (status, created, _) = await SendAsync(daemon.Api, HttpMethod.Post, $"/admin/teams/{teamId}/api-keys", $$"""{"name":"{{name}}"}""");
        Assert.True(status == HttpStatusCode.Created, $"key create answered {(int)status}: {created?.ToJsonString()}");
        return (Get<string>(created!, "key"), Get<string>(created!, "id"));
    }

    /// <summary>A client that sends <paramref name="key"/>; dispose it.</summary>
    public static HttpClient ClientFor(TestDaemon daemon, string key)
    {
        var client = new HttpClient { BaseAddress = daemon.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        client.DefaultRequestHeaders.Add("X-API-Key", key);
        return client;
    }

    /// <summary>A new team with a key, and a client for it.</summary>
    public static async Task<(string TeamId, string KeyId, HttpClient Client)> TeamWithClientAsync(TestDaemon daemon, string limits = "")
    {
        var team = await CreateTeamAsync(daemon, UniqueName("team"), limits);
        var (key, id) = await CreateKeyAsync(daemon, team);
        return (team, id, ClientFor(daemon, key));
    }

    public static async Task<string> CreateSandboxAsync(HttpClient client, string json = """{"templateID":"base"}""")
    {
        var (status, body, _) = await SendAsync(client, HttpMethod.Post, "/v2/sandboxes", json);
        Assert.True(status == HttpStatusCode.Created, $"create answered {(int)status}: {body?.ToJsonString()}");
        return Get<string>(body!, "sandboxID");
    }
}
