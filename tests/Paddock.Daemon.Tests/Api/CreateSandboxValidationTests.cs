using System.Text.Json;
using Paddock.Daemon.Api;

namespace Paddock.Daemon.Tests.Api;

public sealed class CreateSandboxValidationTests
{
    private static readonly DaemonOptions Options = new() { DefaultTimeoutSeconds = 300, MaxTimeoutSeconds = 3600 };

    private static NewSandboxRequest Parse(string json) => JsonSerializer.Deserialize(json, ApiJsonContext.Default.NewSandboxRequest)!;

    private static string Refusal(string json) =>
        Assert.Throws<ApiRequestException>(() => CreateSandboxValidation.Validate(Parse(json), Options)) is { StatusCode: 400 } ex
            ? ex.Message
            : throw new InvalidOperationException("expected a 400");

    [Fact]
    public void Defaults_fill_in_what_the_request_leaves_out()
    {
        var command = CreateSandboxValidation.Validate(Parse("""{"templateID":"base"}"""), Options);
        Assert.Equal("base", command.Template);
        Assert.Equal(300, command.TimeoutSeconds);
        Assert.True(command.Secure);
        Assert.True(command.AllowPublicTraffic);
        Assert.Null(command.AllowInternetAccess);
        Assert.Equal(Options.DefaultCpuCount, command.CpuCount);
        Assert.Equal(Options.DefaultMemoryMB, command.MemoryMB);
        Assert.Equal(Options.DefaultDiskSizeMB, command.DiskSizeMB);
        Assert.Empty(command.Metadata);
        Assert.Empty(command.EnvVars);
    }

    [Fact]
    public void Every_supported_field_is_carried_over()
    {
        var command = CreateSandboxValidation.Validate(Parse("""
            {"templateID":"base","timeout":60,"secure":false,"allow_internet_access":false,"autoPause":true,
             "metadata":{"user":"ann"},"envVars":{"A":"1"},"network":{"allowPublicTraffic":false},
             "mcp":null,"volumeMounts":[],"cpuCount":1,"memoryMB":256,"diskSizeMB":100}
            """), Options);
        Assert.Equal(60, command.TimeoutSeconds);
        Assert.False(command.Secure);
        Assert.False(command.AllowInternetAccess);
        Assert.True(command.AutoPause);
        Assert.False(command.AllowPublicTraffic);
        Assert.Equal("ann", command.Metadata["user"]);
        Assert.Equal("1", command.EnvVars["A"]);
        Assert.Equal((1, 256, 100), (command.CpuCount, command.MemoryMB, command.DiskSizeMB));
    }

    [Theory]
    [InlineData("""{}""", "templateID is required")]
    [InlineData("""{"templateID":"  "}""", "templateID is required")]
    [InlineData("""{"templateID":"base","timeout":-1}""", "at least 0")]
    [InlineData("""{"templateID":"base","timeout":3601}""", "cannot be more than 3600")]
    [InlineData("""{"templateID":"base","metadata":{"a":null}}""", "metadata 'a'")]
    [InlineData("""{"templateID":"base","envVars":{"A=B":"1"}}""", "invalid environment variable name")]
    [InlineData("""{"templateID":"base","envVars":{"A":null}}""", "environment variable 'A'")]
    [InlineData("""{"templateID":"base","mcp":{"x":{}}}""", "mcp")]
    [InlineData("""{"templateID":"base","network":{"allowOut":["1.1.1.1/40"]}}""", "network.allowOut")]
    [InlineData("""{"templateID":"base","network":{"denyOut":["example.com"]}}""", "network.denyOut")]
    [InlineData("""{"templateID":"base","network":{"denyOut":"0.0.0.0/0"}}""", "network.denyOut")]
    [InlineData("""{"templateID":"base","network":{"egressProxy":{"address":"socks5://x"}}}""", "network.egressProxy")]
    [InlineData("""{"templateID":"base","autoResume":{"enabled":true}}""", "autoResume")]
    [InlineData("""{"templateID":"base","memoryMB":64}""", "memoryMB")]
    [InlineData("""{"templateID":"base","cpuCount":0}""", "cpuCount")]
    public void Invalid_or_unsupported_requests_are_refused_naming_the_field(string json, string expected)
    {
        Assert.Contains(expected, Refusal(json), StringComparison.Ordinal);
    }

    [Fact]
    public void An_environment_value_is_never_echoed_in_a_refusal()
    {
        var message = Refusal("""{"templateID":"base","envVars":{"TOKEN":"secret\u0000value"}}""");
        Assert.Contains("TOKEN", message, StringComparison.Ordinal);
        Assert.DoesNotContain("secret", message, StringComparison.Ordinal);
    }
}
