using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Paddock.Daemon.Tests.Api;

/// <summary>Small helpers for driving the control plane over HTTP, as a client would.</summary>
internal static class ApiClient
{
    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> SendAsync(HttpClient client, HttpMethod method, string path, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (json is not null)
        {
            request.Content = Json(json);
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var response = await client.SendAsync(request, timeout.Token);
        var text = await response.Content.ReadAsStringAsync(timeout.Token);
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    /// <summary>Creates a sandbox and returns the create response; fails the test on anything but 201.</summary>
    public static async Task<JsonNode> CreateAsync(TestDaemon daemon, string json = """{"templateID":"base"}""")
    {
        var (status, body, _) = await SendAsync(daemon.Api, HttpMethod.Post, "/v2/sandboxes", json);
        Assert.True(status == HttpStatusCode.Created, $"create answered {(int)status}: {body?.ToJsonString()}");
        return body!;
    }

    /// <summary>Creates a <c>base</c> sandbox with a 600 s timeout and returns its id and envd access token.</summary>
    public static async Task<(string Id, string Token)> CreateSandboxAsync(TestDaemon daemon)
    {
        var created = await CreateAsync(daemon, """{"templateID":"base","timeout":600}""");
        return (Get<string>(created, "sandboxID"), Get<string>(created, "envdAccessToken"));
    }

    /// <summary>Asserts E2B's error shape: <c>{code, message}</c> with code equal to the status.</summary>
    public static string AssertError(HttpStatusCode expected, (HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) result)
    {
        Assert.True(expected == result.Status, $"expected {(int)expected}, got {(int)result.Status}: {result.Body?.ToJsonString()}");
        Assert.NotNull(result.Body);
        Assert.Equal((int)expected, (int)result.Body["code"]!);
        var message = (string?)result.Body["message"];
        Assert.False(string.IsNullOrWhiteSpace(message));
        return message!;
    }

    /// <summary>Polls GET /sandboxes/{id} until it answers 404 (bounded); returns the 404's message.</summary>
    public static async Task<string> WaitUntilGoneAsync(TestDaemon daemon, string sandboxId, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var result = await SendAsync(daemon.Api, HttpMethod.Get, $"/sandboxes/{sandboxId}");
            if (result.Status == HttpStatusCode.NotFound)
            {
                var message = AssertError(HttpStatusCode.NotFound, result);
                // "being killed" is the moment between leaving the live set and the record saying so; wait for the end.
                if (!message.Contains("being killed", StringComparison.Ordinal))
                {
                    return message;
                }
            }
            else
            {
                Assert.Equal(HttpStatusCode.OK, result.Status);
            }
            Assert.True(DateTime.UtcNow < deadline, $"sandbox {sandboxId} was still running after {within}");
            await Task.Delay(100);
        }
    }

    public static T Get<T>(JsonNode node, string name) => node[name]!.GetValue<T>();

    public static JsonSerializerOptions Web { get; } = new(JsonSerializerDefaults.Web);
}
