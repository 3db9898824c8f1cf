using Paddock.Bench.Daemon;

namespace Paddock.Bench.Agent;

/// <summary>
/// The measured agent inside a sandbox of a real paddockd, reached as an SDK reaches it: through paddockd's proxy
/// (one HTTP/1.1 keep-alive connection to paddockd, the sandbox and port chosen by the <c>E2b-Sandbox-Id</c> and
/// <c>E2b-Sandbox-Port</c> headers, its <c>X-Access-Token</c>). paddockd runs the runc tier with no warm pool and
/// the bench's agent binary (<c>PADDOCK_Runc__AgentBinary</c>), so an A/B of two agents compares them through the
/// same hop. <see cref="DisposeAsync"/> kills the sandbox and stops paddockd (its own cleanup).
/// </summary>
internal sealed class ProxiedSandbox : IAsyncDisposable
{
    private const string AgentPort = "49983";

    private readonly PaddockdProcess _daemon;
    private readonly DaemonClient _control;

    private ProxiedSandbox(PaddockdProcess daemon, DaemonClient control, string id, EnvdClient client)
    {
        _daemon = daemon;
        _control = control;
        Id = id;
        Client = client;
    }

    public string Id { get; }

    /// <summary>The agent's routes through paddockd's proxy.</summary>
    public EnvdClient Client { get; }

    /// <summary>paddockd's pid, for its CPU time (<see cref="CpuMeter"/> reads any pid).</summary>
    public int DaemonPid => _daemon.Pid;

    public static async Task<ProxiedSandbox> StartAsync(string agentBinary, string daemonBinary, TextWriter log, CancellationToken cancellationToken)
    {
        var options = new DaemonBenchOptions
        {
            Binary = daemonBinary,
            PoolSize = 0,
            IdleSandboxes = 1,
            FanoutSandboxes = 1,
            Clients = 1,
            // Never frozen between the sections' runs.
            FreezeAfter = TimeSpan.Zero,
        };
        log.WriteLine($"through paddockd: starting {daemonBinary} (runc tier, agent {agentBinary})");
        var daemon = await PaddockdProcess.StartAsync(options, TimeSpan.FromMinutes(10), log, cancellationToken,
            new Dictionary<string, string>
            {
                ["PADDOCK_Runc__AgentBinary"] = agentBinary,
                // Apart from `bench/run daemon`'s 10.200.0.0/16, so that both benches can run on one host at once.
                ["PADDOCK_Runc__Network__Pool"] = "10.219.0.0/16",
            });
        DaemonClient? control = null;
        try
        {
            control = new DaemonClient(daemon.Url, daemon.ApiKey);
            // Memory above the default 512 MiB, so that the page cache of the uploaded files (charged to the
            // sandbox's cgroup) does not make reclaim part of the figure.
            var sandbox = await control.CreateAsync("""{"templateID":"base","timeout":3600,"memoryMB":2048}""", cancellationToken);
            var headers = new Dictionary<string, string>
            {
                ["E2b-Sandbox-Id"] = sandbox.Id,
                ["E2b-Sandbox-Port"] = AgentPort,
            };
            if (sandbox.AccessToken is { } token)
            {
                headers["X-Access-Token"] = token;
            }
            log.WriteLine($"through paddockd: sandbox {sandbox.Id}, paddockd pid {daemon.Pid} on {daemon.Url}");
            return new ProxiedSandbox(daemon, control, sandbox.Id, new EnvdClient(daemon.Url, headers));
        }
        catch
        {
            control?.Dispose();
            await daemon.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            await _control.KillAsync(Id, timeout.Token);
        }
        catch (Exception ex) when (ex is HttpRequestException or OperationCanceledException or IOException)
        {
            // paddockd's own cleanup below kills what is left.
        }
        _control.Dispose();
        await _daemon.DisposeAsync();
    }
}
