using Paddock.Bench.Native;
using Paddock.Bench.Reporting;

namespace Paddock.Bench.Agent;

/// <summary>CPU time spent between two points by each party of a measurement.</summary>
/// <param name="Agent">The agent process itself, all threads.</param>
/// <param name="AgentChildren">What the agent's reaped children (the commands it ran) used.</param>
/// <param name="Client">This process: the bench's client side (or its own pipe reader for a baseline).</param>
/// <param name="Baseline">This process's reaped children: a baseline spawned and waited for here.</param>
internal readonly record struct CpuUse(TimeSpan Agent, TimeSpan AgentChildren, TimeSpan Client, TimeSpan Baseline);

/// <summary>
/// Takes CPU snapshots of the agent and of this process around a measured run. Wall-clock ratios on a loaded,
/// shared machine swing with the scheduler's share for each side; CPU per unit of work is the steadier figure
/// (e.g. "the agent plus the client use N times what cat uses per byte").
/// </summary>
internal sealed class CpuMeter(int agentPid)
{
    public Mark Start()
    {
        var (agent, children) = CpuTime.OfProcess(agentPid);
        return new Mark(this, agent, children, CpuTime.Self(), CpuTime.ReapedChildren());
    }

    internal readonly record struct Mark(CpuMeter Meter, TimeSpan Agent, TimeSpan AgentChildren, TimeSpan Client, TimeSpan Baseline)
    {
        public CpuUse Stop()
        {
            var end = Meter.Start();
            return new CpuUse(end.Agent - Agent, end.AgentChildren - AgentChildren, end.Client - Client, end.Baseline - Baseline);
        }
    }
}

/// <summary>Per-run CPU figures of one measurement, reported as facts (ms of CPU per unit, p50 over runs).</summary>
internal sealed class CpuFigures(string name, string key, string unit)
{
    private readonly Dictionary<string, Samples> _series = [];
    private readonly List<string> _order = [];

    /// <summary>Adds one run's value of <paramref name="party"/> (one plain word: it becomes part of a JSON key), in milliseconds per <paramref name="units"/>.</summary>
    public void Add(string party, TimeSpan cpu, double units)
    {
        if (!_series.TryGetValue(party, out var samples))
        {
            _series[party] = samples = new Samples("ms", Direction.LowerIsBetter);
            _order.Add(party);
        }
        samples.Add(cpu.TotalMilliseconds / units);
    }

    public void Report(Report report)
    {
        foreach (var party in _order)
        {
            var samples = _series[party];
            var label = $"{name}, CPU per {unit}, {party} (p50 of {samples.Count}, min {Format(samples.Percentile(0))}, max {Format(samples.Percentile(100))})";
            report.AddFact(label, $"{key}_cpu_ms_per_{unit}_{party}", "ms", samples.P50);
        }
    }

    private static string Format(double value) => value.ToString(value >= 10 ? "0.0" : "0.000", System.Globalization.CultureInfo.InvariantCulture);
}
