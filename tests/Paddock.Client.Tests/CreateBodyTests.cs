using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Paddock.Client.Tests;

/// <summary>What <see cref="Sandbox.CreateAsync"/> sends for the fields issue 18 added (isolation, egress lists).</summary>
public sealed class CreateBodyTests
{
    [Fact]
    public async Task Isolation_and_egress_lists_go_into_the_create_body_and_are_left_out_when_unset()
    {
        var handler = new CapturingHandler();
        var connection = new ConnectionOptions { ApiUrl = new Uri("http://127.0.0.1:9"), ApiKey = "k", HttpHandler = handler };
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));

        await using (await Sandbox.CreateAsync("base", new SandboxOptions
        {
            Connection = connection,
            Isolation = "gvisor",
            AllowOut = ["10.0.0.0/8", "example.com"],
            DenyOut = ["0.0.0.0/0"],
            KillOnDispose = false,
        }, timeout.Token))
        {
        }
        await using (await Sandbox.CreateAsync("base", new SandboxOptions { Connection = connection, KillOnDispose = false }, timeout.Token))
        {
        }

        await using (await Sandbox.CreateAsync("base", new SandboxOptions
        {
            Connection = connection,
            VolumeMounts = new Dictionary<string, string> { ["/data"] = "work" },
            KillOnDispose = false,
        }, timeout.Token))
        {
        }

        var volumes = handler.Bodies[2]["volumeMounts"]!.AsArray();
        Assert.Equal("work", (string?)Assert.Single(volumes)!["name"]);
        Assert.Equal("/data", (string?)volumes[0]!["path"]);
        Assert.False(handler.Bodies[1].ContainsKey("volumeMounts"));
        var full = handler.Bodies[0];
        Assert.Equal("gvisor", (string?)full["isolation"]);
        Assert.Equal(["10.0.0.0/8", "example.com"], full["network"]!["allowOut"]!.AsArray().Select(n => (string?)n));
        Assert.Equal(["0.0.0.0/0"], full["network"]!["denyOut"]!.AsArray().Select(n => (string?)n));
        var plain = handler.Bodies[1];
        Assert.False(plain.ContainsKey("isolation") && plain["isolation"] is not null);
        Assert.False(plain.ContainsKey("network") && plain["network"] is not null);
    }

    private sealed class CapturingHandler : HttpMessageHandler
    {
        public List<JsonObject> Bodies { get; } = [];

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Assert.Equal(HttpMethod.Post, request.Method);
            Bodies.Add(JsonNode.Parse(await request.Content!.ReadAsStringAsync(cancellationToken))!.AsObject());
            return new HttpResponseMessage(HttpStatusCode.Created)
            {
                Content = new StringContent("""{"templateID":"base","sandboxID":"abcdefghij0123456789","clientID":"x","envdVersion":"0.6.4"}""", Encoding.UTF8, "application/json"),
            };
        }
    }
}
