using System.Collections.Immutable;
using Paddock.Daemon.Cluster;

namespace Paddock.Daemon.Tests.Cluster;

/// <summary>
/// The placement choice (<see cref="ClusterPlacement.Choose(IReadOnlyList{NodeReport}, PlacementNeeds, string, Random, IReadOnlySet{string}?, int)"/>)
/// from node reports alone, no processes: which nodes it leaves out and why, what it prefers among the rest, its
/// ties, and the refusals' statuses and messages. Random draws are seeded, and each preference is checked over many
/// seeds, so a rule that holds only by luck fails.
/// </summary>
public sealed class ClusterPlacementTests
{
    private const int Seeds = 200;

    /// <summary>A node of 4 CPUs and 8 GiB (6 GiB available), 10 slots, runc only, defaults 2 CPUs / 512 MiB / 1 GiB.</summary>
    private static NodeReport Node(string id, int reserved = 0, int max = 10, string[]? tiers = null, long? availableMB = 6144, long totalMB = 8192,
        int cpus = 4, int cpusPromised = 0, string[]? templates = null, PoolReport[]? pools = null, Dictionary<string, string>? unavailable = null) => new()
        {
            NodeId = id,
            SiloAddress = $"S10.0.0.{id.Length}:11111:1",
            Reserved = reserved,
            MaxSandboxes = max,
            Cpus = cpus,
            CpusPromised = cpusPromised,
            MemoryTotalMB = totalMB,
            MemoryAvailableMB = availableMB,
            Templates = [.. templates ?? []],
            Pools = [.. pools ?? []],
            Tiers = [.. tiers ?? ["runc"]],
            UnavailableTiers = (unavailable ?? []).ToImmutableDictionary(StringComparer.Ordinal),
            DefaultTier = "runc",
            DefaultCpuCount = 2,
            DefaultMemoryMB = 512,
            DefaultDiskSizeMB = 1024,
        };

    private static PlacementNeeds Base(string? isolation = null, int? cpuCount = null, int? memoryMB = null, int? diskSizeMB = null) =>
        new("base", isolation, cpuCount, memoryMB, diskSizeMB);

    /// <summary>The node chosen with each of <see cref="Seeds"/> seeds, counted by node.</summary>
    private static Dictionary<string, int> Chosen(IReadOnlyList<NodeReport> reports, PlacementNeeds needs, string self = "self", IReadOnlySet<string>? exclude = null)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var seed = 0; seed < Seeds; seed++)
        {
            var choice = ClusterPlacement.Choose(reports, needs, self, new Random(seed), exclude);
            Assert.True(choice.NodeId is not null, $"seed {seed}: refused {choice.Status} {choice.Message}");
            counts[choice.NodeId!] = counts.GetValueOrDefault(choice.NodeId!) + 1;
        }
        return counts;
    }

    [Fact]
    public void A_tier_asked_for_goes_only_to_nodes_that_can_run_it()
    {
        NodeReport[] nodes = [Node("a"), Node("b", reserved: 9, tiers: ["runc", "gvisor"]), Node("c", unavailable: new() { ["gvisor"] = "runsc was not found" })];
        Assert.Equal(["b"], Chosen(nodes, Base("gvisor")).Keys);
        // Without a tier asked for, the near-full gVisor node is not where the creates go.
        Assert.DoesNotContain("b", Chosen(nodes, Base()).Keys);
    }

    [Fact]
    public void A_tier_no_node_can_run_is_a_503_that_names_it_and_a_reason_and_one_no_node_knows_is_left_to_this_node()
    {
        NodeReport[] nodes = [Node("a"), Node("b", unavailable: new() { ["gvisor"] = "runsc was not found; install it" })];
        var choice = ClusterPlacement.Choose(nodes, Base("gvisor"), "a", new Random(1));
        Assert.Null(choice.NodeId);
        Assert.Equal(503, choice.Status);
        Assert.Equal("no node of the cluster can run isolation 'gvisor' (node b: runsc was not found; install it)", choice.Message);

        // A name no node knows: this node's own API answers it (its 400 lists the tiers it has), nothing is forwarded.
        Assert.Equal("a", ClusterPlacement.Choose(nodes, Base("firecracker"), "a", new Random(1)).NodeId);
    }

    [Fact]
    public void Full_nodes_are_left_out_and_a_full_cluster_is_a_429_that_says_so()
    {
        NodeReport[] nodes = [Node("a", reserved: 10), Node("b", reserved: 9), Node("c", reserved: 10)];
        Assert.Equal(["b"], Chosen(nodes, Base()).Keys);

        var full = ClusterPlacement.Choose([Node("a", reserved: 10), Node("b", reserved: 10)], Base(), "a", new Random(1));
        Assert.Equal((null, 429), (full.NodeId, full.Status));
        Assert.Equal("every node of the cluster already runs its maximum of sandboxes; kill some or add nodes", full.Message);

        // Full among the nodes that can run the tier asked for, while another node has room: the message says which.
        var tier = ClusterPlacement.Choose([Node("a", reserved: 10, tiers: ["runc", "gvisor"]), Node("b")], Base("gvisor"), "b", new Random(1));
        Assert.Equal((null, 429), (tier.NodeId, tier.Status));
        Assert.Equal("every node of the cluster that can run isolation 'gvisor' already runs its maximum of sandboxes; kill some or add nodes", tier.Message);

        var none = ClusterPlacement.Choose([], Base(), "a", new Random(1));
        Assert.Equal((null, 429), (none.NodeId, none.Status));
        Assert.Contains("none answered", none.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Memory_leaves_out_a_node_without_the_sandbox_s_limit_available_and_a_size_no_node_has_is_a_400()
    {
        NodeReport[] nodes = [Node("a", availableMB: 3000), Node("b", availableMB: 5000, reserved: 8)];
        Assert.Equal(["b"], Chosen(nodes, Base(memoryMB: 4096)).Keys);
        // The node's default counts when the create names none: 512 MiB fit both, and the emptier one gets it.
        Assert.Equal(["a"], Chosen(nodes, Base()).Keys);

        var busy = ClusterPlacement.Choose(nodes, Base(memoryMB: 6000), "a", new Random(1));
        Assert.Equal((null, 429), (busy.NodeId, busy.Status));
        Assert.Equal("no node of the cluster with a free sandbox slot has 6000 MiB of memory available now (the most is 5000 MiB); try again later or ask for less", busy.Message);

        var huge = ClusterPlacement.Choose(nodes, Base(memoryMB: 9000), "a", new Random(1));
        Assert.Equal((null, 400), (huge.NodeId, huge.Status));
        Assert.Equal("memoryMB 9000: no node of the cluster has that much memory (the most a node has is 8192 MiB)", huge.Message);

        // A node that did not report its available memory (an older daemon) is not left out for it.
        Assert.Equal(["c"], Chosen([Node("c", availableMB: null)], Base(memoryMB: 8000)).Keys);
    }

    [Fact]
    public void Cpus_leave_out_only_a_node_smaller_than_the_create_and_promised_cpus_only_weigh()
    {
        NodeReport[] nodes = [Node("small", cpus: 2), Node("big", cpus: 16, cpusPromised: 40)];
        // Overcommitted as it is, only the big node has 8 CPUs to give a sandbox.
        Assert.Equal(["big"], Chosen(nodes, Base(cpuCount: 8)).Keys);
        var huge = ClusterPlacement.Choose(nodes, Base(cpuCount: 32), "small", new Random(1));
        Assert.Equal((null, 400), (huge.NodeId, huge.Status));
        Assert.Equal("cpuCount 32: no node of the cluster has that many CPUs (the most a node has is 16)", huge.Message);
        // Otherwise promised CPUs are a weight: the node whose CPUs are all promised loses to the one with none promised.
        Assert.Equal(["small"], Chosen(nodes, Base()).Keys);
    }

    [Fact]
    public void A_ready_pool_member_the_create_would_claim_comes_first_then_the_template_then_free_capacity()
    {
        var pool = new PoolReport { Pool = "base", TemplateId = "base", Isolation = "runc", Ready = 1 };
        NodeReport[] nodes =
        [
            Node("pooled", reserved: 8, templates: ["base"], pools: [pool]),
            Node("template", reserved: 5, templates: ["base", "code-interpreter"]),
            Node("empty"),
        ];
        Assert.Equal(["pooled"], Chosen(nodes, Base()).Keys);
        Assert.Equal(["pooled"], Chosen(nodes, Base("runc", cpuCount: 2, memoryMB: 512, diskSizeMB: 1024)).Keys);
        // A create the member cannot serve (other limits, another tier) starts afresh: the template decides then.
        Assert.Equal(["template"], Chosen(nodes, Base(cpuCount: 1)).Keys);
        Assert.Equal(["template"], Chosen(nodes, Base(memoryMB: 1024)).Keys);
        NodeReport[] gvisor = [.. nodes.Select(n => n with { Tiers = ["runc", "gvisor"] })];
        Assert.Equal(["template"], Chosen(gvisor, Base("gvisor")).Keys);
        // A pool with no ready member is no reason to go there.
        NodeReport[] drained = [nodes[0] with { Pools = [pool with { Ready = 0 }] }, nodes[1], nodes[2]];
        Assert.Equal(["template"], Chosen(drained, Base()).Keys);
        // A pool is matched by its configured name as well as by the template id it resolved to.
        NodeReport[] aliased = [nodes[0] with { Pools = [pool with { Pool = "my-alias" }] }, nodes[1], nodes[2]];
        Assert.Equal(["pooled"], Chosen(aliased, new PlacementNeeds("my-alias", null, null, null, null)).Keys);
        // No node has the template: free capacity alone, so the fullest of the three is never the better of two.
        var other = Chosen(nodes, new PlacementNeeds("other", null, null, null, null));
        Assert.DoesNotContain("pooled", other.Keys);
        Assert.True(other.GetValueOrDefault("empty") > other.GetValueOrDefault("template"));
    }

    [Fact]
    public void Of_K_drawn_the_freest_wins_so_the_fullest_node_is_never_chosen_and_every_other_sometimes_is()
    {
        NodeReport[] nodes = [Node("a", reserved: 1), Node("b", reserved: 4), Node("c", reserved: 7)];
        var counts = Chosen(nodes, Base());
        Assert.False(counts.ContainsKey("c"), "the fullest of three is never the better of two");
        Assert.True(counts.GetValueOrDefault("a") > counts.GetValueOrDefault("b"), $"a {counts.GetValueOrDefault("a")}, b {counts.GetValueOrDefault("b")}");
        Assert.True(counts.GetValueOrDefault("b") > 0, "b is chosen when it is drawn with c");
    }

    [Fact]
    public void On_a_tie_this_node_wins()
    {
        NodeReport[] nodes = [Node("a", reserved: 3), Node("self", reserved: 3)];
        Assert.Equal(["self"], Chosen(nodes, Base()).Keys);
        Assert.Equal(["a"], Chosen(nodes, Base(), self: "a").Keys);
    }

    [Fact]
    public void A_node_that_refused_the_create_is_not_chosen_again()
    {
        NodeReport[] nodes = [Node("a"), Node("b", reserved: 9)];
        Assert.Equal(["b"], Chosen(nodes, Base(), exclude: new HashSet<string> { "a" }).Keys);
        var none = ClusterPlacement.Choose(nodes, Base(), "a", new Random(1), new HashSet<string> { "a", "b" });
        Assert.Equal((null, 429), (none.NodeId, none.Status));
    }

    [Fact]
    public void Free_capacity_is_the_mean_of_free_slots_unpromised_cpus_and_available_memory()
    {
        Assert.Equal((0.5 + 0.25 + 0.75) / 3, ClusterPlacement.FreeCapacity(Node("a", reserved: 5, cpus: 4, cpusPromised: 3, availableMB: 6144, totalMB: 8192)), 9);
        // Overcommitted CPUs count as none free, not less than none.
        Assert.Equal((1 + 0 + 0.75) / 3, ClusterPlacement.FreeCapacity(Node("a", cpus: 4, cpusPromised: 12)), 9);
        // A report without the newer figures (an older node) weighs its slots only.
        var old = new NodeReport { NodeId = "old", SiloAddress = "S", Reserved = 1, MaxSandboxes = 4 };
        Assert.Equal(0.75, ClusterPlacement.FreeCapacity(old), 9);
        // and is not left out for figures or tiers it did not send.
        Assert.Equal("old", ClusterPlacement.Choose([old], Base("runc", cpuCount: 2, memoryMB: 4096), "x", new Random(1)).NodeId);
        var bare = old with { Templates = default, Pools = default, Tiers = default };
        Assert.Equal("old", ClusterPlacement.Choose([bare], Base("gvisor", cpuCount: 2, memoryMB: 4096), "x", new Random(1)).NodeId);
    }

    [Fact]
    public void Available_memory_is_read_from_meminfo_in_mib()
    {
        Assert.Equal(12003, HostMemory.ParseAvailableMB("MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   12291456 kB\nBuffers:  1 kB\n"));
        Assert.Null(HostMemory.ParseAvailableMB("MemTotal: 1 kB\n"));
        Assert.True(HostMemory.AvailableMB() > 0);
    }
}
