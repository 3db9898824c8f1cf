namespace Paddock.Client.Tests;

/// <summary>Where the SDK sends traffic, from options and environment variables (as E2B's SDK computes it).</summary>
public sealed class ConnectionOptionsTests
{
    private static ResolvedConnection Resolve(ConnectionOptions options, params (string Name, string Value)[] env)
    {
        var vars = env.ToDictionary(e => e.Name, e => e.Value);
        return options.Resolve(name => vars.GetValueOrDefault(name));
    }

    [Fact]
    public void Nothing_configured_means_the_local_daemon_for_both_api_and_sandboxes()
    {
        var c = Resolve(new ConnectionOptions());
        Assert.Equal(new Uri("http://127.0.0.1:3000"), c.ApiUrl);
        Assert.Equal(c.ApiUrl, c.SandboxUrl);
        Assert.Equal(new Uri("http://127.0.0.1:3000"), c.EnvdUrl("abc", null, 49983));
        Assert.Equal(TimeSpan.FromSeconds(60), c.RequestTimeout);
    }

    [Fact]
    public void Paddock_variables_win_over_E2B_ones()
    {
        var c = Resolve(new ConnectionOptions(), ("PADDOCK_URL", "http://127.0.0.1:4000"), ("E2B_API_URL", "http://other:1"), ("PADDOCK_API_KEY", "pk"), ("E2B_API_KEY", "ek"));
        Assert.Equal(new Uri("http://127.0.0.1:4000"), c.ApiUrl);
        Assert.Equal(new Uri("http://127.0.0.1:4000"), c.SandboxUrl);
        Assert.Equal("pk", c.ApiKey);
    }

    [Fact]
    public void E2B_variables_are_honoured()
    {
        var c = Resolve(new ConnectionOptions(), ("E2B_API_URL", "http://127.0.0.1:5000"), ("E2B_SANDBOX_URL", "http://127.0.0.1:5001"), ("E2B_API_KEY", "ek"));
        Assert.Equal(new Uri("http://127.0.0.1:5000"), c.ApiUrl);
        Assert.Equal(new Uri("http://127.0.0.1:5001"), c.SandboxUrl);
        Assert.Equal("ek", c.ApiKey);
    }

    [Fact]
    public void A_domain_means_per_sandbox_hosts()
    {
        var c = Resolve(new ConnectionOptions(), ("E2B_DOMAIN", "sandboxes.example"));
        Assert.Equal(new Uri("https://api.sandboxes.example"), c.ApiUrl);
        Assert.Null(c.SandboxUrl);
        Assert.Equal(new Uri("https://49983-abc.sandboxes.example"), c.EnvdUrl("abc", null, 49983));
        Assert.Equal("8080-abc.other.example", c.Host("abc", "other.example", 8080));
    }

    [Fact]
    public void Debug_mode_goes_straight_to_localhost()
    {
        var c = Resolve(new ConnectionOptions(), ("E2B_DEBUG", "true"));
        Assert.True(c.Debug);
        Assert.Equal(new Uri("http://localhost:49983"), c.EnvdUrl("abc", null, 49983));
        Assert.Equal("localhost:8080", c.Host("abc", null, 8080));
        Assert.Equal(new Uri("http://localhost:3000"), c.ApiUrl);
    }

    [Fact]
    public void Explicit_options_win_over_the_environment()
    {
        var c = Resolve(new ConnectionOptions { ApiUrl = new Uri("http://127.0.0.1:7000"), ApiKey = "explicit" }, ("PADDOCK_URL", "http://127.0.0.1:4000"), ("PADDOCK_API_KEY", "pk"));
        Assert.Equal(new Uri("http://127.0.0.1:7000"), c.ApiUrl);
        Assert.Equal("explicit", c.ApiKey);
    }

    [Fact]
    public void A_malformed_url_is_reported_by_name()
    {
        var ex = Assert.Throws<ArgumentException>(() => Resolve(new ConnectionOptions(), ("PADDOCK_URL", "not a url")));
        Assert.Contains("PADDOCK_URL", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_user_travels_as_basic_auth_with_an_empty_password()
    {
        Assert.Equal("Basic " + Convert.ToBase64String("root:"u8.ToArray()), Paddock.Client.Envd.EnvdEndpoint.BasicAuth("root"));
    }
}
