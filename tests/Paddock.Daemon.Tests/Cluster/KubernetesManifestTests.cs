using Paddock.Daemon.Tests.Runtimes;
using YamlDotNet.RepresentationModel;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// deploy/kubernetes/ checked offline (there is no Kubernetes here, and Debian 12 has no kubectl): every file parses
/// as YAML, every object has what the API server requires (apiVersion, kind, metadata.name), the kustomization lists
/// exactly the files there are, and the pieces fit together: the DaemonSet runs paddockd privileged in cluster mode
/// with its identity, address and store from the node and the Secret, its state on a hostPath; the Service selects
/// the DaemonSet's pods by a port they name; the Ingress sends the API host and the wildcard sandbox host to it.
/// </summary>
public sealed class KubernetesManifestTests
{
    private static readonly string Folder = Path.Combine(TestEnvironment.RepositoryRoot, "deploy", "kubernetes");

    [Fact]
    public void Every_manifest_parses_and_names_its_api_version_kind_and_name()
    {
        var files = Directory.GetFiles(Folder, "*.yaml");
        Assert.NotEmpty(files);
        foreach (var file in files.Where(f => Path.GetFileName(f) != "kustomization.yaml"))
        {
            var documents = Load(file);
            Assert.NotEmpty(documents);
            foreach (var doc in documents)
            {
                Assert.False(string.IsNullOrEmpty(Scalar(doc, "apiVersion")), $"{file}: no apiVersion");
                Assert.False(string.IsNullOrEmpty(Scalar(doc, "kind")), $"{file}: no kind");
                Assert.False(string.IsNullOrEmpty(Scalar(doc, "metadata", "name")), $"{file}: no metadata.name");
            }
        }
        var kustomization = Load(Path.Combine(Folder, "kustomization.yaml")).Single();
        var listed = Sequence(kustomization, "resources").Select(n => ((YamlScalarNode)n).Value!).Order().ToList();
        var present = files.Select(f => Path.GetFileName(f)).Where(f => f != "kustomization.yaml").Order().ToList();
        Assert.Equal(present, listed);
    }

    [Fact]
    public void The_daemonset_runs_paddockd_privileged_in_cluster_mode_and_the_service_and_ingress_reach_it()
    {
        var objects = Directory.GetFiles(Folder, "*.yaml").Where(f => Path.GetFileName(f) != "kustomization.yaml").SelectMany(Load).ToList();
        var daemonSet = objects.Single(o => Scalar(o, "kind") == "DaemonSet");
        var pod = Map(daemonSet, "spec", "template", "spec");
        var container = (YamlMappingNode)Sequence(pod, "containers").Single();
        Assert.Equal("true", Scalar(container, "securityContext", "privileged"));
        Assert.Contains("--cluster", Sequence(container, "args").Select(a => ((YamlScalarNode)a).Value));
        var env = Sequence(container, "env").Cast<YamlMappingNode>().ToDictionary(e => Scalar(e, "name")!);
        Assert.Equal("spec.nodeName", Scalar(env["PADDOCK_NODE_ID"], "valueFrom", "fieldRef", "fieldPath"));
        Assert.NotNull(Scalar(env["PADDOCK_ADVERTISE"], "valueFrom", "fieldRef", "fieldPath"));
        var secret = objects.Single(o => Scalar(o, "kind") == "Secret");
        Assert.Equal(Scalar(secret, "metadata", "name"), Scalar(env["PADDOCK_STORE"], "valueFrom", "secretKeyRef", "name"));
        Assert.True(Map(secret, "stringData").Children.ContainsKey(new YamlScalarNode(Scalar(env["PADDOCK_STORE"], "valueFrom", "secretKeyRef", "key"))));
        // The options the environment sets are ones paddockd reads (DaemonOptions' PADDOCK_* names).
        foreach (var name in env.Keys)
        {
            Assert.Contains($"env {name}", DaemonOptions.Usage, StringComparison.Ordinal);
        }

        // The state directory on the host, so a restarted pod finds its sandboxes.
        var stateMount = Sequence(container, "volumeMounts").Cast<YamlMappingNode>().Single(m => Scalar(m, "mountPath") == "/var/lib/paddock");
        var stateVolume = Sequence(pod, "volumes").Cast<YamlMappingNode>().Single(v => Scalar(v, "name") == Scalar(stateMount, "name"));
        Assert.Equal("/var/lib/paddock", Scalar(stateVolume, "hostPath", "path"));

        // The Service selects the pods and targets a port the container names.
        var podLabels = Map(daemonSet, "spec", "template", "metadata", "labels");
        var service = objects.Single(o => Scalar(o, "kind") == "Service");
        foreach (var (key, value) in Map(service, "spec", "selector").Children)
        {
            Assert.Equal(((YamlScalarNode)value).Value, ((YamlScalarNode)podLabels.Children[key]).Value);
        }
        var portNames = Sequence(container, "ports").Select(p => Scalar((YamlMappingNode)p, "name")).ToList();
        var servicePort = (YamlMappingNode)Sequence(service, "spec", "ports").Single();
        Assert.Contains(Scalar(servicePort, "targetPort"), portNames);

        // The Ingress: the API host and the wildcard sandbox host, both to the Service's port.
        var ingress = objects.Single(o => Scalar(o, "kind") == "Ingress");
        var rules = Sequence(ingress, "spec", "rules").Cast<YamlMappingNode>().ToList();
        var domain = Scalar(env["PADDOCK_DOMAIN"], "value");
        Assert.Contains(rules, r => Scalar(r, "host") == domain);
        Assert.Contains(rules, r => Scalar(r, "host") == "*." + domain);
        foreach (var rule in rules)
        {
            var backend = Map((YamlMappingNode)Sequence(rule, "http", "paths").Single(), "backend", "service");
            Assert.Equal(Scalar(service, "metadata", "name"), Scalar(backend, "name"));
            Assert.Equal(Scalar(servicePort, "name"), Scalar(backend, "port", "name"));
        }
    }

    private static List<YamlMappingNode> Load(string file)
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(file))
        {
            stream.Load(reader);
        }
        return [.. stream.Documents.Select(d => Assert.IsType<YamlMappingNode>(d.RootNode))];
    }

    private static YamlNode? Find(YamlMappingNode node, params string[] path)
    {
        YamlNode current = node;
        foreach (var key in path)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out var next))
            {
                return null;
            }
            current = next;
        }
        return current;
    }

    private static string? Scalar(YamlMappingNode node, params string[] path) => (Find(node, path) as YamlScalarNode)?.Value;

    private static YamlMappingNode Map(YamlMappingNode node, params string[] path) =>
        Find(node, path) as YamlMappingNode ?? throw new InvalidOperationException($"no mapping at {string.Join('.', path)}");

    private static YamlSequenceNode Sequence(YamlMappingNode node, params string[] path) =>
        Find(node, path) as YamlSequenceNode ?? throw new InvalidOperationException($"no sequence at {string.Join('.', path)}");
}
