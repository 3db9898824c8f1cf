using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Http.Features;
using Paddock.Agent.Connect;

namespace Paddock.Agent.Hosting;

/// <summary>
/// The agent's routes and middleware, served straight from Kestrel (<see cref="IHttpApplication{TContext}"/>) instead
/// of through ASP.NET Core's generic host, endpoint routing and minimal APIs.
/// </summary>
/// <remarks>
/// Why: the host's dependency injection builds its open generic services (IOptions&lt;&gt;, ILogger&lt;&gt;,
/// IEnumerable&lt;&gt; of each) through NativeAOT's type loader at every start: in a perf profile of agent starts
/// (issue 6) that was 30% of the start's CPU, and the host's objects made the GC commit and zero fresh memory for
/// another quarter. The agent has a dozen fixed routes, so an exact lookup does what routing did for it, with the same
/// answers: paths compare without case and a trailing slash is ignored, an unknown path is 404, and a known path asked
/// with another method is 405 with an <c>Allow</c> header.
/// </remarks>
internal sealed class AgentRoutes : IHttpApplication<HttpContext>
{
    private readonly Dictionary<string, List<(string Method, RequestDelegate Handler)>> _routes = new(StringComparer.OrdinalIgnoreCase);
    private readonly List<Func<HttpContext, RequestDelegate, Task>> _middleware = [];
    private RequestDelegate? _pipeline;

    public AgentRoutes(AgentServices services)
    {
        Services = services;
    }

    /// <summary>The agent's singletons, for the code that maps routes.</summary>
    public AgentServices Services { get; }

    public void MapGet(string path, RequestDelegate handler) => Map(HttpMethods.Get, path, handler);

    public void MapPost(string path, RequestDelegate handler) => Map(HttpMethods.Post, path, handler);

    /// <summary>Adds a middleware; they run in the order added, before the route's handler.</summary>
    public void Use(Func<HttpContext, RequestDelegate, Task> middleware)
    {
        if (_pipeline is not null)
        {
            throw new InvalidOperationException("middleware must be added before the first request");
        }
        _middleware.Add(middleware);
    }

    private void Map(string method, string path, RequestDelegate handler)
    {
        if (_pipeline is not null)
        {
            throw new InvalidOperationException("routes must be mapped before the first request");
        }
        if (!_routes.TryGetValue(path, out var handlers))
        {
            _routes[path] = handlers = [];
        }
        if (handlers.Exists(h => h.Method == method))
        {
            throw new InvalidOperationException($"{method} {path} is mapped twice");
        }
        handlers.Add((method, handler));
    }

    /// <summary>Fixes the pipeline: middleware in order, then the route. Called once before the server starts.</summary>
    public void Build()
    {
        RequestDelegate pipeline = Dispatch;
        for (var i = _middleware.Count - 1; i >= 0; i--)
        {
            var middleware = _middleware[i];
            var next = pipeline;
            pipeline = http => middleware(http, next);
        }
        _pipeline = pipeline;
    }

    private Task Dispatch(HttpContext http)
    {
        var path = http.Request.Path.Value ?? "/";
        if (path.Length > 1 && path[^1] == '/')
        {
            path = path[..^1];
        }
        if (!_routes.TryGetValue(path, out var handlers))
        {
            http.Response.StatusCode = StatusCodes.Status404NotFound;
            return Task.CompletedTask;
        }
        foreach (var (method, handler) in handlers)
        {
            if (HttpMethods.Equals(method, http.Request.Method))
            {
                return handler(http);
            }
        }
        http.Response.StatusCode = StatusCodes.Status405MethodNotAllowed;
        http.Response.Headers.Allow = string.Join(", ", handlers.Select(h => h.Method));
        return Task.CompletedTask;
    }

    HttpContext IHttpApplication<HttpContext>.CreateContext(IFeatureCollection contextFeatures) => new DefaultHttpContext(contextFeatures);

    Task IHttpApplication<HttpContext>.ProcessRequestAsync(HttpContext context) =>
        (_pipeline ?? throw new InvalidOperationException("the routes were not built")).Invoke(context);

    void IHttpApplication<HttpContext>.DisposeContext(HttpContext context, Exception? exception)
    {
        // Nothing is pooled or scoped per request: the context goes to the GC with its features.
    }
}

/// <summary>The agent's long-lived objects, made once in Program.cs and handed to the code that maps routes.</summary>
internal sealed record AgentServices(
    AgentOptions Options,
    ConnectServerOptions ConnectOptions,
    Users.UserDirectory Users,
    Auth.AccessTokenCheck TokenCheck,
    Processes.ProcessEnvironment Environment,
    ILoggerFactory Loggers,
    IHostApplicationLifetime Lifetime);
