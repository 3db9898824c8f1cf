using System.Collections.Concurrent;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Observability;

/// <summary>A span as OTLP sent it: ids in hex, the name, string attributes.</summary>
internal sealed record CollectedSpan(string TraceId, string SpanId, string ParentSpanId, string Name, IReadOnlyDictionary<string, string> Attributes);

/// <summary>
/// An OTLP/HTTP collector in the test: POST /v1/traces with ExportTraceServiceRequest in protobuf, read with
/// Google.Protobuf's wire reader by the field numbers of opentelemetry/proto/trace/v1/trace.proto (ResourceSpans 1 →
/// ScopeSpans 2 → Span 2; Span: trace_id 1, span_id 2, parent_span_id 4, name 5, attributes 9).
/// </summary>
internal sealed class OtlpCollector : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpCollector(WebApplication app, Uri endpoint)
    {
        _app = app;
        Endpoint = endpoint;
    }

    public Uri Endpoint { get; }

    public ConcurrentQueue<CollectedSpan> Spans { get; } = new();

    public static async Task<OtlpCollector> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        OtlpCollector? collector = null;
        app.MapPost("/v1/traces", async (HttpContext http) =>
        {
            using var buffer = new MemoryStream();
            await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
            foreach (var span in Parse(buffer.ToArray()))
            {
                collector!.Spans.Enqueue(span);
            }
            http.Response.ContentType = "application/x-protobuf";
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        collector = new OtlpCollector(app, new Uri(address));
        return collector;
    }

    private static IEnumerable<(int Field, byte[] Bytes)> Fields(byte[] message)
    {
        var input = new CodedInputStream(message);
        var list = new List<(int, byte[])>();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagWireType(tag) == WireFormat.WireType.LengthDelimited)
            {
                list.Add((WireFormat.GetTagFieldNumber(tag), input.ReadBytes().ToByteArray()));
            }
            else
            {
                input.SkipLastField();
            }
        }
        return list;
    }

    private static IEnumerable<CollectedSpan> Parse(byte[] request) =>
        from resourceSpans in Fields(request).Where(f => f.Field == 1)
        from scopeSpans in Fields(resourceSpans.Bytes).Where(f => f.Field == 2)
        from span in Fields(scopeSpans.Bytes).Where(f => f.Field == 2)
        select ParseSpan(span.Bytes);

    private static CollectedSpan ParseSpan(byte[] span)
    {
        var fields = Fields(span).ToList();
        string Hex(int field) => fields.FirstOrDefault(f => f.Field == field).Bytes is { } b ? Convert.ToHexStringLower(b) : "";
        var attributes = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var kv in fields.Where(f => f.Field == 9))
        {
            var parts = Fields(kv.Bytes).ToList();
            var key = parts.FirstOrDefault(p => p.Field == 1).Bytes;
            var value = parts.FirstOrDefault(p => p.Field == 2).Bytes;
            var text = value is null ? null : Fields(value).FirstOrDefault(p => p.Field == 1).Bytes;
            if (key is not null && text is not null)
            {
                attributes[Encoding.UTF8.GetString(key)] = Encoding.UTF8.GetString(text);
            }
        }
        return new CollectedSpan(Hex(1), Hex(2), Hex(4), Encoding.UTF8.GetString(fields.FirstOrDefault(f => f.Field == 5).Bytes ?? []), attributes);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Spans of a real daemon exported by OTLP to the in-test collector.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task A_create_is_a_span_with_its_steps_as_children_under_the_request_and_proxied_calls_have_spans()
    {
        await using var collector = await OtlpCollector.StartAsync();
        using var state = new TempDir();
        await using var runtime = new LocalAgentRuntime();
        string id;
        await using (var daemon = await TestDaemon.StartAsync(runtime, state.Path, o => o with { OtlpEndpoint = collector.Endpoint }))
        {
            var created = await CreateAsync(daemon, """{"templateID":"base"}""");
            id = Get<string>(created, "sandboxID");
            Assert.Equal(0, await EnvdCalls.RunAsync(daemon, id, Get<string>(created, "envdAccessToken"), "true"));
            await SendAsync(daemon.Api, HttpMethod.Delete, $"/sandboxes/{id}");
            // Disposing the daemon disposes its tracer provider, which exports what it still holds.
        }
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

        var spans = collector.Spans.ToList();
        var create = Assert.Single(spans, s => s.Name == "sandbox.create" && s.Attributes.GetValueOrDefault("paddock.sandbox.id") == id);
        Assert.Equal("cold", create.Attributes["paddock.create.path"]);
        var steps = spans.Where(s => s.ParentSpanId == create.SpanId).Select(s => s.Name).ToList();
        // The steps Server-Timing shows, the runtime's own included (this runtime double marks none).
        Assert.Contains("template", steps);
        Assert.Contains("store-insert", steps);
        Assert.Contains("store-update", steps);
        Assert.Contains("template-startup", steps);
        Assert.All(spans.Where(s => s.ParentSpanId == create.SpanId), s => Assert.Equal(create.TraceId, s.TraceId));
        // Its parent is ASP.NET Core's span of the POST.
        var request = Assert.Single(spans, s => s.SpanId == create.ParentSpanId);
        Assert.Equal(create.TraceId, request.TraceId);

        var proxied = Assert.Single(spans, s => s.Name == "sandbox.proxy" && s.Attributes.GetValueOrDefault("paddock.sandbox.id") == id);
        Assert.Equal("process.Start", proxied.Attributes["paddock.envd.method"]);
        Assert.Equal("200", proxied.Attributes["http.response.status_code"]);
    }
}
