using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Options;
using Paddock.Shared.Kestrel;

namespace Paddock.Agent.Hosting;

/// <summary>
/// Runs Kestrel with the agent's routes without ASP.NET Core's generic host (why: <see cref="AgentRoutes"/>), in the
/// order the host ran the agent: stop signals armed, Kestrel listening, ApplicationStarted; on a stop signal,
/// ApplicationStopping (the process supervisor forwards the signal, watchers end), Kestrel drains its requests, the
/// supervisor's wait for the processes, ApplicationStopped, then everything disposed in reverse.
/// </summary>
internal sealed class AgentServer
{
    /// <summary>The generic host's default <c>HostOptions.ShutdownTimeout</c>, which bounded the agent's stop before.</summary>
    public static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    private readonly ILoggerFactory _loggers;
    private readonly ApplicationLifetime _lifetime;
    private readonly List<object> _owned = [];
    private RelisteningTransportFactory? _transport;

    public AgentServer(ILoggerFactory loggers)
    {
        _loggers = loggers;
        _lifetime = new ApplicationLifetime(new Logger<ApplicationLifetime>(loggers));
        Kestrel = new KestrelServerOptions { ApplicationServices = new NoServices() };
    }

    public IHostApplicationLifetime Lifetime => _lifetime;

    /// <summary>Kestrel's options, to set before <see cref="RunAsync"/>.</summary>
    public KestrelServerOptions Kestrel { get; }

    /// <summary>Hands an object to the server to dispose when it has stopped (in reverse order of hand-over, as a container would).</summary>
    public T Own<T>(T disposable)
        where T : class
    {
        _owned.Add(disposable);
        return disposable;
    }

    /// <summary>When the TCP listening sockets were bound, in Unix milliseconds (<see cref="RelisteningTransportFactory.ListeningSince"/>); 0 before the server runs.</summary>
    public long ListeningSince => _transport?.ListeningSince ?? 0;

    /// <summary>Serves <paramref name="routes"/> until a stop signal or <see cref="IHostApplicationLifetime.StopApplication"/>, then stops as described above.</summary>
    /// <param name="routes">The routes, built here.</param>
    /// <param name="pools">Kestrel's buffer pools (<see cref="LargeBlockMemoryPoolFactory"/>).</param>
    /// <param name="stopSignals">Arms the handling of SIGTERM, SIGINT and SIGQUIT; disposed at the end.</param>
    /// <param name="supervisor">Started after the signals and before Kestrel; stopped after Kestrel.</param>
    public async Task RunAsync(AgentRoutes routes, IMemoryPoolFactory<byte> pools, IHostLifetime stopSignals, IHostedService supervisor)
    {
        routes.Build();
        var transportOptions = new SocketTransportOptions();
        // Kestrel takes its buffer pools from the transport's options, which only the host's setup can set (the
        // property is internal): the accessor fails at start, loudly, if a later ASP.NET Core renames it.
        SetMemoryPoolFactory(transportOptions, pools);
        // Accepting that ends while the server runs binds the endpoint again (RelisteningTransportFactory, issue 15).
        var transport = _transport = new RelisteningTransportFactory(
            new SocketTransportFactory(Options.Create(transportOptions), _loggers),
            new Logger<RelisteningTransportFactory>(_loggers));
        using var restoreWatch = new RestoreWatch(transport, new Logger<RestoreWatch>(_loggers));
        using var server = new KestrelServer(Options.Create(Kestrel), transport, _loggers);
        try
        {
            await stopSignals.WaitForStartAsync(CancellationToken.None);
            await supervisor.StartAsync(CancellationToken.None);
            await server.StartAsync(routes, CancellationToken.None);
            _lifetime.NotifyStarted();
            if (RestoreWatch.IsGvisor())
            {
                restoreWatch.Start();
            }

            var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using (_lifetime.ApplicationStopping.Register(() => stopping.TrySetResult()))
            {
                await stopping.Task;
            }

            using var timeout = new CancellationTokenSource(ShutdownTimeout);
            await server.StopAsync(timeout.Token);
            try
            {
                await supervisor.StopAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                // The shutdown timeout passed: stop without waiting longer for the processes, as the host did.
            }
            await stopSignals.StopAsync(timeout.Token);
            _lifetime.NotifyStopped();
        }
        finally
        {
            for (var i = _owned.Count - 1; i >= 0; i--)
            {
                (_owned[i] as IDisposable)?.Dispose();
            }
            (stopSignals as IDisposable)?.Dispose();
        }
    }

    [UnsafeAccessor(UnsafeAccessorKind.Method, Name = "set_MemoryPoolFactory")]
    private static extern void SetMemoryPoolFactory(SocketTransportOptions options, IMemoryPoolFactory<byte> factory);

    /// <summary>Kestrel's options want a service provider (only HTTPS set-up reads it); the agent has no services to offer.</summary>
    private sealed class NoServices : IServiceProvider
    {
        public object? GetService(Type serviceType) => null;
    }
}

/// <summary>
/// The console lifetime's stop signals outside a sandbox (the agent is not PID 1): SIGTERM, SIGINT and SIGQUIT stop
/// the agent gracefully instead of killing it. As PID 1, <see cref="SandboxInitLifetime"/> takes their place.
/// </summary>
internal sealed class ConsoleStopSignals : IHostLifetime, IDisposable
{
    private readonly IHostApplicationLifetime _application;
    private readonly List<PosixSignalRegistration> _registrations = [];

    public ConsoleStopSignals(IHostApplicationLifetime application)
    {
        _application = application;
    }

    public Task WaitForStartAsync(CancellationToken cancellationToken)
    {
        foreach (var signal in new[] { PosixSignal.SIGTERM, PosixSignal.SIGINT, PosixSignal.SIGQUIT })
        {
            _registrations.Add(PosixSignalRegistration.Create(signal, context =>
            {
                context.Cancel = true;
                _application.StopApplication();
            }));
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }
    }
}
