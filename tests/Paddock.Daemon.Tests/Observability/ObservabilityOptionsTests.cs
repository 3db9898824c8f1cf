namespace Paddock.Daemon.Tests.Observability;

/// <summary>The observability settings of paddockd: flags, PADDOCK_* variables, and clear errors for bad values.</summary>
public sealed class ObservabilityOptionsTests
{
    private static DaemonOptions Parse(string[] args, Dictionary<string, string>? env = null) =>
        DaemonOptions.Parse(args, name => env?.GetValueOrDefault(name));

    [Fact]
    public void Defaults_are_text_logs_metrics_on_no_traces_and_a_bounded_audit_trail()
    {
        var options = Parse([]);
        Assert.Equal(LogFormat.Text, options.LogFormat);
        Assert.True(options.MetricsEnabled);
        Assert.Null(options.OtlpEndpoint);
        Assert.Equal(10_000, options.AuditMaxEventsPerSandbox);
        Assert.Equal(TimeSpan.FromDays(30), options.AuditRetention);
    }

    [Fact]
    public void Flags_and_variables_set_them()
    {
        var options = Parse(["--log-format", "json", "--metrics", "off", "--otlp-endpoint", "http://127.0.0.1:4318", "--audit-max-events", "0", "--audit-retention", "3600"]);
        Assert.Equal(LogFormat.Json, options.LogFormat);
        Assert.False(options.MetricsEnabled);
        Assert.Equal(new Uri("http://127.0.0.1:4318"), options.OtlpEndpoint);
        Assert.Equal(0, options.AuditMaxEventsPerSandbox);
        Assert.Equal(TimeSpan.FromHours(1), options.AuditRetention);

        var fromEnv = Parse([], new() { ["PADDOCK_LOG_FORMAT"] = "json", ["PADDOCK_METRICS"] = "off", ["PADDOCK_AUDIT_MAX_EVENTS"] = "500" });
        Assert.Equal(LogFormat.Json, fromEnv.LogFormat);
        Assert.False(fromEnv.MetricsEnabled);
        Assert.Equal(500, fromEnv.AuditMaxEventsPerSandbox);
    }

    [Theory]
    [InlineData("--log-format", "xml", "expected text or json")]
    [InlineData("--metrics", "maybe", "expected on or off")]
    [InlineData("--otlp-endpoint", "grpc://x", "expected http(s)://HOST:PORT")]
    [InlineData("--audit-max-events", "10", "expected an integer of at least 100")]
    [InlineData("--audit-retention", "0", "expected an integer of at least 1")]
    public void Bad_values_are_refused_with_what_was_expected(string flag, string value, string message)
    {
        var ex = Assert.Throws<ArgumentException>(() => Parse([flag, value]));
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
    }
}
