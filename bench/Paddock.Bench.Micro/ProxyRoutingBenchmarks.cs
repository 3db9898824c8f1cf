using BenchmarkDotNet.Attributes;
using Microsoft.AspNetCore.Http;
using Paddock.Daemon.Proxy;

namespace Paddock.Bench.Micro;

/// <summary>
/// Deciding, on every request the daemon takes, whether it is sandbox traffic and for which sandbox and port. The
/// baseline is the floor any router pays: one dictionary lookup of the whole host name.
/// </summary>
[MemoryDiagnoser]
public class ProxyRoutingBenchmarks
{
    private const string Domain = "paddock.localhost";
    private readonly Dictionary<string, int> _hosts = new(StringComparer.OrdinalIgnoreCase);
    private string _host = "";
    private HttpRequest _byHeaders = null!;
    private HttpRequest _byHost = null!;
    private HttpRequest _controlPlane = null!;

    [GlobalSetup]
    public void Setup()
    {
        var id = "i" + new string('a', 19);
        _host = $"49983-{id}.{Domain}";
        _hosts[_host] = 49983;
        _byHeaders = Request("127.0.0.1:3000", (SandboxRouting.SandboxIdHeader, id), (SandboxRouting.SandboxPortHeader, "49983"));
        _byHost = Request(_host);
        _controlPlane = Request("127.0.0.1:3000");
    }

    private static HttpRequest Request(string host, params (string Name, string Value)[] headers)
    {
        var http = new DefaultHttpContext();
        http.Request.Host = new HostString(host);
        foreach (var (name, value) in headers)
        {
            http.Request.Headers[name] = value;
        }
        return http.Request;
    }

    [Benchmark(Baseline = true, Description = "floor: dictionary lookup of the host")]
    public int DictionaryLookup() => _hosts.TryGetValue(_host, out var port) ? port : 0;

    [Benchmark(Description = "route by {port}-{id}.{domain} host")]
    public int RouteByHost() => (int)SandboxRouting.Route(_byHost, Domain).Kind;

    [Benchmark(Description = "route by E2b-Sandbox-Id/-Port headers")]
    public int RouteByHeaders() => (int)SandboxRouting.Route(_byHeaders, Domain).Kind;

    [Benchmark(Description = "control-plane request (not routed)")]
    public int RouteControlPlane() => (int)SandboxRouting.Route(_controlPlane, Domain).Kind;
}
