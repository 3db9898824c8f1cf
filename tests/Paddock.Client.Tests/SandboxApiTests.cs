namespace Paddock.Client.Tests;

/// <summary>
/// The REST side of the SDK (Sandbox.CreateAsync and friends) against the real paddockd, and the envd side through
/// the daemon's proxy. Needs the daemon to be able to start sandboxes (root, runc, the base template).
/// </summary>
[Trait("needs", "daemon")]
public sealed class SandboxApiTests : IClassFixture<DaemonFixture>
{
    private readonly DaemonProcess _daemon;

    public SandboxApiTests(DaemonFixture fixture) => _daemon = fixture.Daemon;

    private SandboxOptions Options(IReadOnlyDictionary<string, string>? metadata = null) => new()
    {
        Connection = _daemon.Connection(),
        Timeout = TimeSpan.FromMinutes(5),
        Metadata = metadata,
    };

    [Fact]
    public async Task Create_run_read_and_dispose_kills_the_sandbox()
    {
        string id;
        await using (var sandbox = await Sandbox.CreateAsync("base", Options(), Limits.Token(120)))
        {
            id = sandbox.SandboxId;
            Assert.False(string.IsNullOrEmpty(id));
            var result = await sandbox.Commands.RunAsync("echo hello from $(hostname)", cancellationToken: Limits.Token());
            Assert.StartsWith("hello from", result.Stdout, StringComparison.Ordinal);
            await sandbox.Files.WriteAsync("/tmp/x.txt", "data", cancellationToken: Limits.Token());
            Assert.Equal("data", await sandbox.Files.ReadTextAsync("/tmp/x.txt", cancellationToken: Limits.Token()));
            Assert.True(await sandbox.IsRunningAsync(Limits.Token()));
        }
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => Sandbox.GetInfoAsync(id, _daemon.Connection(), Limits.Token()));
    }

    [Fact]
    public async Task KillOnDispose_false_leaves_it_running_and_Connect_reaches_it()
    {
        string id;
        await using (var sandbox = await Sandbox.CreateAsync("base", Options() with { KillOnDispose = false }, Limits.Token(120)))
        {
            id = sandbox.SandboxId;
            await sandbox.Files.WriteAsync("/tmp/kept.txt", "kept", cancellationToken: Limits.Token());
        }
        try
        {
            await using var again = await Sandbox.ConnectAsync(id, new SandboxConnectOptions { Connection = _daemon.Connection() }, Limits.Token());
            Assert.Equal("kept", await again.Files.ReadTextAsync("/tmp/kept.txt", cancellationToken: Limits.Token()));
        }
        finally
        {
            Assert.True(await Sandbox.KillAsync(id, _daemon.Connection(), Limits.Token()));
        }
        Assert.False(await Sandbox.KillAsync(id, _daemon.Connection(), Limits.Token()));
    }

    [Fact]
    public async Task Info_timeout_metrics_and_list_with_pages()
    {
        var tag = Guid.NewGuid().ToString("N");
        var metadata = new Dictionary<string, string> { ["test"] = tag };
        await using var a = await Sandbox.CreateAsync("base", Options(metadata), Limits.Token(120));
        await using var b = await Sandbox.CreateAsync("base", Options(metadata) with { Isolation = "runc" }, Limits.Token(120));

        var info = await a.GetInfoAsync(Limits.Token());
        Assert.Equal(a.SandboxId, info.SandboxId);
        // Whatever the daemon's default tier, it is named; a sandbox that asked for one runs on it.
        Assert.False(string.IsNullOrEmpty(info.Isolation));
        Assert.Equal("runc", (await b.GetInfoAsync(Limits.Token())).Isolation);
        Assert.Equal(SandboxState.Running, info.State);
        Assert.Equal(tag, info.Metadata["test"]);
        Assert.True(info.EndAt > info.StartedAt);

        await a.SetTimeoutAsync(TimeSpan.FromSeconds(1000), Limits.Token());
        var extended = await a.GetInfoAsync(Limits.Token());
        Assert.InRange(extended.EndAt - DateTimeOffset.UtcNow, TimeSpan.FromSeconds(900), TimeSpan.FromSeconds(1000));

        var metrics = await a.GetMetricsAsync(cancellationToken: Limits.Token());
        Assert.All(metrics, m => Assert.True(m.MemoryTotal >= 0));

        var listed = new List<SandboxInfo>();
        await foreach (var s in Sandbox.ListAsync(new SandboxListFilter { Metadata = metadata, PageSize = 1 }, _daemon.Connection(), Limits.Token()))
        {
            listed.Add(s);
        }
        Assert.Equal(new[] { a.SandboxId, b.SandboxId }.Order(StringComparer.Ordinal), listed.Select(s => s.SandboxId).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Logs_of_a_sandbox_can_be_read()
    {
        await using var sandbox = await Sandbox.CreateAsync("base", Options(), Limits.Token(120));
        var logs = await Sandbox.GetLogsAsync(sandbox.SandboxId, connection: _daemon.Connection(), cancellationToken: Limits.Token());
        Assert.NotNull(logs);
    }

    [Fact]
    public async Task Templates_can_be_listed()
    {
        var templates = await Templates.ListAsync(_daemon.Connection(), Limits.Token());
        Assert.Contains(templates, t => t.TemplateId == "base" || t.Names.Contains("base"));
    }

    [Fact]
    public async Task Unknown_ids_are_SandboxNotFoundExceptions()
    {
        var connection = _daemon.Connection();
        const string unknown = "nosuchsandbox0000000"; // well-formed (20 of [a-z0-9]), never created
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => Sandbox.GetInfoAsync(unknown, connection, Limits.Token()));
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => Sandbox.ConnectAsync(unknown, new SandboxConnectOptions { Connection = connection }, Limits.Token()));
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => Sandbox.SetTimeoutAsync(unknown, TimeSpan.FromMinutes(1), connection, Limits.Token()));
        Assert.False(await Sandbox.KillAsync(unknown, connection, Limits.Token()));
        // envd traffic for a sandbox the proxy does not know
        await using var ghost = Sandbox.ForEnvd(connection, unknown);
        var ex = await Assert.ThrowsAsync<SandboxNotFoundException>(() => ghost.Commands.RunAsync("true", cancellationToken: Limits.Token()));
        Assert.Equal(unknown, ex.SandboxId);
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => ghost.Files.ReadTextAsync("/etc/hostname", cancellationToken: Limits.Token()));
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => ghost.Commands.ListAsync(Limits.Token()));
        // an id that cannot be one: the proxy refuses it as an argument, with its own message
        await using var malformed = Sandbox.ForEnvd(connection, "Not_An_Id");
        var bad = await Assert.ThrowsAsync<InvalidArgumentException>(() => malformed.Commands.ListAsync(Limits.Token()));
        Assert.Contains("Not_An_Id", bad.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_key_is_an_AuthenticationException()
    {
        var bad = _daemon.Connection(apiKey: "paddock_not_a_real_key");
        await Assert.ThrowsAsync<AuthenticationException>(() => Sandbox.CreateAsync("base", new SandboxOptions { Connection = bad }, Limits.Token()));
        await Assert.ThrowsAsync<AuthenticationException>(async () =>
        {
            await foreach (var _ in Sandbox.ListAsync(connection: bad, cancellationToken: Limits.Token()))
            {
            }
        });
        var none = _daemon.Connection(apiKey: "");
        await Assert.ThrowsAsync<AuthenticationException>(() => Sandbox.GetInfoAsync("whatever", none, Limits.Token()));
    }
}

/// <summary>Control-plane failures that need no daemon.</summary>
public sealed class ApiErrorTests
{
    [Fact]
    public async Task A_stopped_daemon_is_a_ServiceUnreachableException()
    {
        var port = AgentProcess.FreePort();
        var nowhere = new ConnectionOptions { ApiUrl = new Uri($"http://127.0.0.1:{port}"), ApiKey = "x" };
        var ex = await Assert.ThrowsAsync<ServiceUnreachableException>(() => Sandbox.CreateAsync("base", new SandboxOptions { Connection = nowhere }, Limits.Token()));
        Assert.Contains($"127.0.0.1:{port}", ex.Message, StringComparison.Ordinal);
    }
}
