using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Paddock.Interpreter.Contexts;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Http;

/// <summary>
/// E2B's code interpreter API (template/server/main.py of e2b-dev/code-interpreter, as @e2b/code-interpreter 2.8.0
/// calls it): /health, /execute (streamed NDJSON), /contexts. Errors are plain text with the status the SDK maps:
/// 400 a request it cannot serve, 404 an unknown context, 422 a malformed body, 500 a kernel that would not start.
/// </summary>
internal static class InterpreterEndpoints
{
    /// <summary>A line at least this often while a cell is silent (E2B: 5 s), so a gone client is noticed by the write.</summary>
    public static TimeSpan KeepaliveInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Bodies of the JSON routes are small; code is capped at what a cell can sensibly be.</summary>
    private const int MaxBodyBytes = 16 * 1024 * 1024;

    public static void Map(IEndpointRouteBuilder app, ContextRegistry contexts, ServerReadiness readiness)
    {
        app.MapGet("/health", (RequestDelegate)(http => readiness.Error is { } error
            ? Text(http, StatusCodes.Status500InternalServerError, "the default python context could not start: " + error)
            : readiness.IsReady ? Text(http, 200, "OK") : Text(http, StatusCodes.Status503ServiceUnavailable, "starting")));
        app.MapPost("/execute", (RequestDelegate)(http => ExecuteAsync(http, contexts)));
        app.MapGet("/contexts", (RequestDelegate)(http =>
            http.Response.WriteAsJsonAsync(contexts.List().ToList(), InterpreterJson.Default.ListContextInfo, cancellationToken: http.RequestAborted)));
        app.MapPost("/contexts", (RequestDelegate)(http => CreateContextAsync(http, contexts)));
        app.MapPost("/contexts/{id}/restart", (RequestDelegate)(async http =>
        {
            var id = (string)http.Request.RouteValues["id"]!;
            if (contexts.Find(id) is not { } context)
            {
                await Text(http, 404, $"Context {id} not found");
                return;
            }
            try
            {
                await context.RestartAsync(http.RequestAborted);
                http.Response.StatusCode = StatusCodes.Status204NoContent;
            }
            catch (IOException ex)
            {
                await Text(http, 500, $"Failed to restart context {id}: {ex.Message}");
            }
        }));
        app.MapDelete("/contexts/{id}", (RequestDelegate)(async http =>
        {
            var id = (string)http.Request.RouteValues["id"]!;
            if (!await contexts.RemoveAsync(id))
            {
                await Text(http, 404, $"Context {id} not found");
                return;
            }
            http.Response.StatusCode = StatusCodes.Status204NoContent;
        }));
    }

    private static async Task ExecuteAsync(HttpContext http, ContextRegistry contexts)
    {
        ExecuteRequest request;
        try
        {
            request = ExecuteRequest.Parse(await ReadBodyAsync(http));
        }
        catch (BadBodyException ex)
        {
            await Text(http, StatusCodes.Status422UnprocessableEntity, ex.Message);
            return;
        }
        if (!string.IsNullOrEmpty(request.ContextId) && !string.IsNullOrEmpty(request.Language))
        {
            await Text(http, 400, "Only one of context_id or language can be provided");
            return;
        }
        CodeContext context;
        if (!string.IsNullOrEmpty(request.ContextId))
        {
            if (contexts.Find(request.ContextId) is not { } found)
            {
                await Text(http, 404, $"Context {request.ContextId} not found");
                return;
            }
            context = found;
        }
        else
        {
            if (KernelSpec.Normalize(request.Language) is not { } language)
            {
                await Text(http, 400, UnknownLanguage(request.Language!));
                return;
            }
            try
            {
                context = await contexts.DefaultAsync(language, http.RequestAborted);
            }
            catch (IOException ex)
            {
                await Text(http, 500, $"the default {language} context could not start: {ex.Message}");
                return;
            }
        }

        var lines = Channel.CreateUnbounded<byte[]>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var run = context.ExecuteAsync(request.Code, request.EnvVars, lines.Writer, http.RequestAborted);
        http.Response.ContentType = "application/x-ndjson";
        // Headers go out now: the SDK's request timeout ends at the response, its execution timeout covers the body.
        await http.Response.StartAsync(http.RequestAborted);
        try
        {
            await WriteLinesAsync(http, lines.Reader);
            await http.Response.Body.WriteAsync(OutputLines.End, http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException)
        {
            // The client left: ExecuteAsync sees the same token and interrupts the kernel.
        }
        await run;
    }

    private static async Task WriteLinesAsync(HttpContext http, ChannelReader<byte[]> lines)
    {
        var body = http.Response.Body;
        var aborted = http.RequestAborted;
        while (true)
        {
            var ready = lines.WaitToReadAsync(aborted);
            if (!ready.IsCompleted)
            {
                var wait = ready.AsTask();
                // Bounded per round by the keepalive interval; the loop ends when the cell ends or the client goes.
                while (await Task.WhenAny(wait, Task.Delay(KeepaliveInterval, aborted)) != wait)
                {
                    aborted.ThrowIfCancellationRequested();
                    await body.WriteAsync(OutputLines.Keepalive, aborted);
                    await body.FlushAsync(aborted);
                }
                ready = new ValueTask<bool>(wait);
            }
            if (!await ready)
            {
                return;
            }
            while (lines.TryRead(out var line))
            {
                await body.WriteAsync(line, aborted);
            }
            await body.FlushAsync(aborted);
        }
    }

    private static async Task CreateContextAsync(HttpContext http, ContextRegistry contexts)
    {
        CreateContextRequest request;
        try
        {
            request = CreateContextRequest.Parse(await ReadBodyAsync(http));
        }
        catch (BadBodyException ex)
        {
            await Text(http, StatusCodes.Status422UnprocessableEntity, ex.Message);
            return;
        }
        if (KernelSpec.Normalize(request.Language) is not { } language)
        {
            await Text(http, 400, UnknownLanguage(request.Language!));
            return;
        }
        var cwd = string.IsNullOrEmpty(request.Cwd) ? contexts.DefaultCwd : request.Cwd;
        if (!Path.IsPathRooted(cwd) || !Directory.Exists(cwd))
        {
            await Text(http, 400, $"cwd '{cwd}' is not an existing directory (an absolute path is needed)");
            return;
        }
        try
        {
            var context = await contexts.CreateAsync(language, cwd, http.RequestAborted);
            await http.Response.WriteAsJsonAsync(context.Info, InterpreterJson.Default.ContextInfo, cancellationToken: http.RequestAborted);
        }
        catch (IOException ex)
        {
            await Text(http, 500, $"the {language} kernel could not be started: {ex.Message}");
        }
    }

    private static string UnknownLanguage(string language) =>
        $"unsupported language '{language}': this sandbox runs {string.Join(", ", KernelSpec.Languages)} (and the aliases js, ts, sh)";

    private static async Task<byte[]> ReadBodyAsync(HttpContext http)
    {
        if (http.Request.ContentLength > MaxBodyBytes)
        {
            throw new BadBodyException($"the body is larger than {MaxBodyBytes} bytes");
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int n;
        while ((n = await http.Request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
        {
            if (buffer.Length + n > MaxBodyBytes)
            {
                throw new BadBodyException($"the body is larger than {MaxBodyBytes} bytes");
            }
            buffer.Write(chunk, 0, n);
        }
        return buffer.ToArray();
    }

    private static Task Text(HttpContext http, int status, string text)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "text/plain; charset=utf-8";
        return http.Response.WriteAsync(text, http.RequestAborted);
    }
}

/// <summary>Whether the default python context is up (what /health and the template's ready check wait for).</summary>
internal sealed class ServerReadiness
{
    public volatile bool IsReady;

    public volatile string? Error;
}
