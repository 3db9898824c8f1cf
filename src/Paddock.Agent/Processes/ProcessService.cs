using System.Runtime.ExceptionServices;
using Google.Protobuf;
using Paddock.Agent.Connect;
using Paddock.Agent.Hosting;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Processes;

/// <summary>
/// The <c>process.Process</c> Connect service (E2B envd's process API): start, attach to, feed, signal and list
/// processes in the sandbox.
/// </summary>
internal sealed class ProcessService
{
    private const string Service = "process.Process";

    private readonly ProcessTable _table;
    private readonly ProcessSpawner _spawner;
    private readonly ProcessEnvironment _environment;
    private readonly OutputPoller _poller;
    private readonly AgentOptions _options;
    private readonly ILogger<ProcessService> _logger;

    public ProcessService(ProcessTable table, ProcessSpawner spawner, ProcessEnvironment environment, OutputPoller poller, AgentOptions options, ILogger<ProcessService> logger)
    {
        _table = table;
        _spawner = spawner;
        _environment = environment;
        _poller = poller;
        _options = options;
        _logger = logger;
    }

    public void Map(AgentRoutes app)
    {
        app.MapConnectServerStream<StartRequest, StartResponse>(Service, "Start", StartAsync);
        app.MapConnectServerStream<ConnectRequest, ConnectResponse>(Service, "Connect", ConnectAsync);
        app.MapConnectUnary<ListRequest, ListResponse>(Service, "List", List);
        app.MapConnectUnary<SendInputRequest, SendInputResponse>(Service, "SendInput", SendInputAsync);
        app.MapConnectClientStream<StreamInputRequest, StreamInputResponse>(Service, "StreamInput", StreamInputAsync);
        app.MapConnectUnary<CloseStdinRequest, CloseStdinResponse>(Service, "CloseStdin", CloseStdinAsync);
        app.MapConnectUnary<SendSignalRequest, SendSignalResponse>(Service, "SendSignal", SendSignal);
        app.MapConnectUnary<UpdateRequest, UpdateResponse>(Service, "Update", Update);
    }

    /// <summary>
    /// Starts a process and streams its events. The process outlives the stream: a client that disconnects leaves
    /// it running (Connect attaches again). The exception is the call's own deadline (Connect-Timeout-Ms), which
    /// E2B's SDKs send as the command's timeout: when it passes, the process group is killed, as envd does.
    /// </summary>
    private async Task StartAsync(StartRequest request, IStreamWriter<StartResponse> writer, ConnectCallContext context)
    {
        var config = request.Process ?? throw new ConnectException(ConnectCode.InvalidArgument, "the request names no process to start");
        if (string.IsNullOrEmpty(config.Cmd))
        {
            throw new ConnectException(ConnectCode.InvalidArgument, "the process has no cmd");
        }
        CheckText(config);
        (ushort, ushort)? terminal = null;
        if (request.Pty is { } pty)
        {
            var (cols, rows) = (pty.Size?.Cols ?? 0, pty.Size?.Rows ?? 0);
            if (cols > ushort.MaxValue || rows > ushort.MaxValue)
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"terminal size {cols}x{rows} is out of range (at most 65535x65535)");
            }
            terminal = ((ushort)cols, (ushort)rows);
        }

        var user = context.User;
        var cwd = ResolveWorkingDirectory(config, user);
        var env = _environment.Build(user, terminal is not null, config.Envs);
        var pathVariable = env.FindLast(kv => kv.Key == "PATH").Value;
        var executable = ProcessEnvironment.ResolveExecutable(config.Cmd, pathVariable, cwd)
            ?? throw new ConnectException(ConnectCode.InvalidArgument, $"cannot execute '{config.Cmd}': not found in PATH ({pathVariable})");

        using var reservation = _table.Reserve();
        var process = new ManagedProcess(config.Clone(), request.HasTag ? request.Tag : null, terminal is not null, _poller, _logger);
        using var subscription = process.Output.Subscribe(chunk => SendDataAsync(writer, chunk, context.CancellationToken));
        var spawned = await _spawner.SpawnAsync(new SpawnRequest(
            executable,
            [config.Cmd, .. config.Args],
            env.ConvertAll(kv => kv.Key + "=" + kv.Value),
            cwd,
            user,
            Stdin: !request.HasStdin || request.Stdin,
            terminal), context.CancellationToken);
        process.Attach(spawned);
        _table.Add(process, reservation);
        ProcessLog.Started(_logger, process.Pid, config.Cmd, user.Name);
        if (CallTimeout(context.Http) is { } timeout)
        {
            _ = KillAtDeadlineAsync(process, timeout);
        }

        try
        {
            await StreamAsync(process, subscription, (e, last) => last
                ? writer.WriteFinalAsync(new StartResponse { Event = e }, context.CancellationToken)
                : writer.WriteAsync(new StartResponse { Event = e }, context.CancellationToken), context);
        }
        catch (OperationCanceledException) when (!context.Http.RequestAborted.IsCancellationRequested && context.CancellationToken.IsCancellationRequested)
        {
            // The deadline passed with the client still listening: the kill is KillAtDeadlineAsync's; the client
            // hears deadline_exceeded.
            throw;
        }
    }

    /// <summary>The Start call's Connect-Timeout-Ms (already validated by the Connect layer), or null without one.</summary>
    private static TimeSpan? CallTimeout(HttpContext http) =>
        http.Request.Headers.TryGetValue("Connect-Timeout-Ms", out var value) && long.TryParse(value, out var ms) && ms > 0
            ? TimeSpan.FromMilliseconds(Math.Min(ms, int.MaxValue))
            : null;

    /// <summary>
    /// Kills the process group when the Start call's deadline passes, whether or not its client is still there:
    /// E2B's SDKs abandon the stream on their own timer at the same moment, so a kill tied to the stream would
    /// usually lose that race and leave the command running (envd ties the kill to the process, too).
    /// </summary>
    private async Task KillAtDeadlineAsync(ManagedProcess process, TimeSpan timeout)
    {
        using var stop = new CancellationTokenSource();
        var deadline = Task.Delay(timeout, stop.Token);
        if (await Task.WhenAny(process.Ended, deadline) == deadline && !process.Ended.IsCompleted)
        {
            ProcessLog.DeadlineKill(_logger, process.Pid);
            process.Signal(Signals.SIGKILL);
        }
        // Ended first: cancelling frees the timer now rather than at the deadline.
        await stop.CancelAsync();
    }

    /// <summary>Attaches to a running process: a start event with its pid, its further output, its end.</summary>
    private async Task ConnectAsync(ConnectRequest request, IStreamWriter<ConnectResponse> writer, ConnectCallContext context)
    {
        var process = _table.Find(request.Process);
        using var subscription = process.Output.Subscribe(chunk => SendDataAsync(writer, chunk, context.CancellationToken));
        await StreamAsync(process, subscription, (e, last) => last
            ? writer.WriteFinalAsync(new ConnectResponse { Event = e }, context.CancellationToken)
            : writer.WriteAsync(new ConnectResponse { Event = e }, context.CancellationToken), context);
    }

    /// <summary>
    /// A data event, encoded straight into the response in one piece (both responses carry the event as field 1, so
    /// one encoding serves Start and Connect).
    /// </summary>
    private static ValueTask SendDataAsync<T>(IStreamWriter<T> writer, OutputChunk chunk, CancellationToken cancellationToken) => writer.IsJson
        ? writer.WriteEncodedAsync(DataEventJson.Length(chunk), DataEventJson.Encode, chunk, cancellationToken)
        : writer.WriteEncodedAsync(DataEventProto.Length(chunk), DataEventProto.Encode, chunk, cancellationToken);

    /// <summary>
    /// The start event, then the output (sent by the process's pumps through the subscription) and keepalives, then
    /// the end event. <paramref name="write"/> writes an event; its flag marks the last one.
    /// </summary>
    private static async Task StreamAsync(ManagedProcess process, OutputSubscription subscription, Func<ProcessEvent, bool, ValueTask> write, ConnectCallContext context)
    {
        var cancellationToken = context.CancellationToken;
        try
        {
            await write(new ProcessEvent { Start = new ProcessEvent.Types.StartEvent { Pid = (uint)process.Pid } }, false);
            subscription.Start();
            // Stopped by disposing the timer, not by a token: a cancelled PeriodicTimer wait throws, and measured with
            // bench/ (`true` round trips) that exception's stack trace was a tenth of the agent's CPU per call.
            var keepAliveTimer = new PeriodicTimer(context.KeepAliveInterval);
            var keepAlive = KeepAliveAsync(e => write(e, false), keepAliveTimer);
            try
            {
                if (await subscription.Finished.WaitAsync(cancellationToken) is { } failure)
                {
                    ExceptionDispatchInfo.Throw(failure);
                }
            }
            finally
            {
                keepAliveTimer.Dispose();
                await keepAlive;
            }
            // The subscription finishes only after the last output was sent, and the end event exists by then.
            var end = await process.Ended.WaitAsync(cancellationToken);
            await write(new ProcessEvent { End = end }, true);
        }
        catch (Exception ex) when (context.Http.RequestAborted.IsCancellationRequested && ex is IOException or OperationCanceledException or InvalidOperationException)
        {
            // The client went away: the process goes on without this stream.
        }
    }

    /// <summary>Writes a keepalive event at every tick of <paramref name="timer"/> until it is disposed.</summary>
    private static async Task KeepAliveAsync(Func<ProcessEvent, ValueTask> write, PeriodicTimer timer)
    {
        try
        {
            while (await timer.WaitForNextTickAsync(CancellationToken.None))
            {
                await write(new ProcessEvent { Keepalive = new ProcessEvent.Types.KeepAlive() });
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or InvalidOperationException)
        {
            // A failed write (the client left, the deadline passed) is the main loop's to report.
        }
    }

    private ValueTask<ListResponse> List(ListRequest request, ConnectCallContext context)
    {
        var response = new ListResponse();
        foreach (var p in _table.Snapshot())
        {
            if (p.Ended.IsCompleted)
            {
                continue;
            }
            var info = new ProcessInfo { Config = p.Config, Pid = (uint)p.Pid };
            if (p.Tag is not null)
            {
                info.Tag = p.Tag;
            }
            response.Processes.Add(info);
        }
        return ValueTask.FromResult(response);
    }

    private async ValueTask<SendInputResponse> SendInputAsync(SendInputRequest request, ConnectCallContext context)
    {
        var process = _table.Find(request.Process);
        await process.WriteInputAsync(request.Input ?? throw new ConnectException(ConnectCode.InvalidArgument, "the request carries no input"), context.CancellationToken);
        return new SendInputResponse();
    }

    /// <summary>A start event selecting the process, then data events in order; keepalives are skipped.</summary>
    private async ValueTask<StreamInputResponse> StreamInputAsync(IAsyncEnumerable<StreamInputRequest> requests, ConnectCallContext context)
    {
        ManagedProcess? process = null;
        await foreach (var request in requests)
        {
            switch (request.EventCase)
            {
                case StreamInputRequest.EventOneofCase.Start:
                    if (process is not null)
                    {
                        throw new ConnectException(ConnectCode.InvalidArgument, "the input stream selected its process twice");
                    }
                    process = _table.Find(request.Start.Process);
                    break;
                case StreamInputRequest.EventOneofCase.Data:
                    if (process is null)
                    {
                        throw new ConnectException(ConnectCode.InvalidArgument, "the input stream sent data before a start event selecting the process");
                    }
                    await process.WriteInputAsync(request.Data.Input ?? throw new ConnectException(ConnectCode.InvalidArgument, "a data event carries no input"), context.CancellationToken);
                    break;
                default:
                    break; // keepalive
            }
        }
        return process is null
            ? throw new ConnectException(ConnectCode.InvalidArgument, "the input stream ended without a start event selecting the process")
            : new StreamInputResponse();
    }

    private async ValueTask<CloseStdinResponse> CloseStdinAsync(CloseStdinRequest request, ConnectCallContext context)
    {
        await _table.Find(request.Process).CloseStdinAsync(context.CancellationToken);
        return new CloseStdinResponse();
    }

    private ValueTask<SendSignalResponse> SendSignal(SendSignalRequest request, ConnectCallContext context)
    {
        var signal = request.Signal switch
        {
            Signal.Sigterm => Signals.SIGTERM,
            Signal.Sigkill => Signals.SIGKILL,
            _ => throw new ConnectException(ConnectCode.InvalidArgument, $"unsupported signal {request.Signal}: only SIGTERM and SIGKILL are sent"),
        };
        _table.Find(request.Process).Signal(signal);
        return ValueTask.FromResult(new SendSignalResponse());
    }

    private ValueTask<UpdateResponse> Update(UpdateRequest request, ConnectCallContext context)
    {
        var process = _table.Find(request.Process);
        if (request.Pty?.Size is { } size)
        {
            process.Resize(size.Cols, size.Rows);
        }
        return ValueTask.FromResult(new UpdateResponse());
    }

    /// <summary>
    /// The request's cwd ("~" and relative paths from the user's home, as envd resolves them); without one the
    /// agent's default workdir, else the home, else "/" when the home does not exist (as login(1) does).
    /// </summary>
    private string ResolveWorkingDirectory(ProcessConfig config, AgentUser user)
    {
        string cwd;
        if (config.HasCwd && config.Cwd.Length > 0)
        {
            var requested = config.Cwd;
            if (requested == "~" || requested.StartsWith("~/", StringComparison.Ordinal))
            {
                requested = user.Home + requested[1..];
            }
            cwd = Path.GetFullPath(Path.IsPathRooted(requested) ? requested : Path.Combine(user.Home, requested));
        }
        else if (_options.DefaultWorkdir is { Length: > 0 } workdir)
        {
            cwd = workdir;
        }
        else
        {
            return Directory.Exists(user.Home) ? user.Home : "/";
        }
        if (!Directory.Exists(cwd))
        {
            throw new ConnectException(ConnectCode.InvalidArgument, File.Exists(cwd)
                ? $"cwd '{cwd}' is not a directory"
                : $"cwd '{cwd}' does not exist");
        }
        return cwd;
    }

    // NUL cannot pass through execve: a C string ends there, so the process would silently get something else.
    private static void CheckText(ProcessConfig config)
    {
        static void Check(string value, string what)
        {
            if (value.Contains('\0', StringComparison.Ordinal))
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"{what} contains a NUL character");
            }
        }

        Check(config.Cmd, "cmd");
        foreach (var a in config.Args)
        {
            Check(a, "an argument");
        }
        foreach (var (key, value) in config.Envs)
        {
            if (key.Length == 0 || key.Contains('=', StringComparison.Ordinal))
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"invalid environment variable name '{key}'");
            }
            Check(key, "an environment variable name");
            Check(value, $"environment variable {key}");
        }
        if (config.HasCwd)
        {
            Check(config.Cwd, "cwd");
        }
    }
}

/// <summary>The process service's parts, made once at start.</summary>
internal static class ProcessServiceExtensions
{
    /// <summary>
    /// Makes the reaper (started now, before any request can spawn), spawner, table and service, maps the
    /// process.Process routes, and returns the supervisor that ends child processes when the agent stops; the reaper
    /// and the supervisor go to <paramref name="server"/> to be disposed when it has stopped.
    /// </summary>
    public static ProcessSupervisor MapProcessService(this AgentRoutes app, AgentServer server)
    {
        var services = app.Services;
        var reaper = server.Own(new ChildReaper(new Logger<ChildReaper>(services.Loggers)));
        var table = new ProcessTable();
        var service = new ProcessService(table, new ProcessSpawner(reaper), services.Environment,
            new OutputPoller(new Logger<OutputPoller>(services.Loggers)), services.Options, new Logger<ProcessService>(services.Loggers));
        service.Map(app);
        return server.Own(new ProcessSupervisor(table, reaper, services.Lifetime, new Logger<ProcessSupervisor>(services.Loggers)));
    }

    /// <summary>The sandbox-wide variables: the agent's PATH, then those the host passed in PADDOCK_AGENT_SANDBOX_ENV.</summary>
    public static ProcessEnvironment LoadEnvironment()
    {
        var environment = new ProcessEnvironment(Environment.GetEnvironmentVariable("PATH"));
        environment.LoadSandboxVariables(Environment.GetEnvironmentVariable("PADDOCK_AGENT_SANDBOX_ENV"));
        return environment;
    }
}
