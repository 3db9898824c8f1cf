using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace Paddock.Bench.Micro;

internal static class Program
{
    public static int Main(string[] args)
    {
        // In-process: the benchmarks reference an AOT web app and the daemon, which BenchmarkDotNet's default toolchain
        // (a generated project built per run) handles badly; in-process also keeps a run to a minute or two.
        // --quick: BenchmarkDotNet's ShortRun (3 iterations) instead of its default statistics.
        var quick = args.Contains("--quick");
        var job = (quick ? Job.ShortRun : Job.Default).WithToolchain(InProcessEmitToolchain.Instance);
        var config = DefaultConfig.Instance.AddJob(job).WithOptions(ConfigOptions.DisableOptimizationsValidator);
        var rest = args.Where(a => a != "--quick").ToArray();
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(rest.Length == 0 ? ["--filter", "*"] : rest, config);
        return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
    }
}
