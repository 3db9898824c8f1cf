using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// What the runtime and template tests share, prepared once per test process and cached on disk across runs:
/// the published agent, the <c>base</c> template (debootstrap, about a minute the first time) and a busybox
/// template without any libc. Everything lives under <see cref="StateRoot"/> (default /var/lib/paddock-test,
/// or PADDOCK_TEST_STATE). These tests need root and runc, as CI has.
/// </summary>
internal static class TestEnvironment
{
    public static string StateRoot { get; } = Environment.GetEnvironmentVariable("PADDOCK_TEST_STATE") is { Length: > 0 } s ? s : "/var/lib/paddock-test";

    public static string TemplatesDirectory => Path.Combine(StateRoot, "templates");

    /// <summary>Build output of templates, for reading when a build fails.</summary>
    public static string BuildLog => Path.Combine(StateRoot, "template-build.log");

    public static TemplateStore Templates { get; } = new(TemplatesDirectory, IdMapping.Default, [], NullLogger<TemplateStore>.Instance);

    private static readonly Lazy<Task<string>> Agent = new(PrepareAgentAsync);
    private static readonly Lazy<Task<TemplateInfo>> Base = new(() => Templates.EnsureAsync(DebootstrapRecipe.Base, Timeout(TimeSpan.FromMinutes(15)), Progress));
    private static readonly Lazy<Task<TemplateInfo>> Busybox = new(() => Templates.EnsureAsync(new BusyboxRecipe(), Timeout(TimeSpan.FromMinutes(2)), Progress));

    public static Task<string> AgentBinaryAsync() => Agent.Value;

    public static Task<TemplateInfo> BaseTemplateAsync() => Base.Value;

    public static Task<TemplateInfo> BusyboxTemplateAsync() => Busybox.Value;

    /// <summary>Throws with a clear message unless the tests can work: root, and runc installed.</summary>
    public static void RequireRootAndRunc()
    {
        if (Files.Stat("/proc/self").Uid != 0)
        {
            throw new InvalidOperationException("these tests start real runc sandboxes and need root (CI runs as root)");
        }
        if (!File.Exists("/usr/sbin/runc") && !File.Exists("/usr/bin/runc"))
        {
            throw new InvalidOperationException("runc is not installed: run scripts/setup (apt-get install runc debootstrap busybox-static)");
        }
    }

    public static CancellationToken Timeout(TimeSpan timeout) => new CancellationTokenSource(timeout).Token;

    private static void Progress(string line)
    {
        lock (BuildLog)
        {
            Directory.CreateDirectory(StateRoot);
            File.AppendAllText(BuildLog, $"{DateTime.UtcNow:O} {line}\n");
        }
    }

    public static string RepositoryRoot { get; } = FindRepositoryRoot();

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Paddock.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new InvalidOperationException($"no Paddock.slnx above {AppContext.BaseDirectory}");
    }

    /// <summary>
    /// PADDOCK_AGENT_BINARY when set (scripts/test sets it), else a NativeAOT publish of the agent's current
    /// sources, cached under the state root by a hash of those sources.
    /// </summary>
    private static async Task<string> PrepareAgentAsync()
    {
        if (Environment.GetEnvironmentVariable("PADDOCK_AGENT_BINARY") is { Length: > 0 } configured)
        {
            return File.Exists(configured)
                ? configured
                : throw new FileNotFoundException($"PADDOCK_AGENT_BINARY names {configured}, which does not exist");
        }
        var hash = HashSources(["src/Paddock.Agent", "src/Paddock.Envd", "proto", "Directory.Build.props", "Directory.Packages.props"]);
        var output = Path.Combine(StateRoot, "agent-publish", hash);
        var binary = Path.Combine(output, "paddock-agent");
        if (File.Exists(binary))
        {
            return binary;
        }
        var result = await ExternalCommand.RunAsync(
            "dotnet",
            ["publish", Path.Combine(RepositoryRoot, "src/Paddock.Agent"), "-c", "Release", "-o", output, "-nologo", "-v", "quiet"],
            Timeout(TimeSpan.FromMinutes(10)));
        return result.Succeeded && File.Exists(binary)
            ? binary
            : throw new InvalidOperationException("publishing the agent failed: " + result.Describe());
    }

    private static string HashSources(string[] roots)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var root in roots)
        {
            var full = Path.Combine(RepositoryRoot, root);
            IEnumerable<string> files = File.Exists(full)
                ? [full]
                : Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories)
                    .Where(f => !f.Contains("/bin/", StringComparison.Ordinal) && !f.Contains("/obj/", StringComparison.Ordinal))
                    .Order(StringComparer.Ordinal);
            foreach (var file in files)
            {
                sha.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(RepositoryRoot, file)));
                sha.AppendData(File.ReadAllBytes(file));
            }
        }
        return Convert.ToHexStringLower(sha.GetHashAndReset())[..16];
    }
}

/// <summary>
/// A template with no libc at all: a statically linked busybox (Debian's busybox-static) and its applet links,
/// root in /etc/passwd and nothing else. The agent must run here from its own bundle.
/// </summary>
internal sealed class BusyboxRecipe : ITemplateRecipe
{
    public const string Binary = "/bin/busybox";

    public string Name => "busybox-test";

    public string Fingerprint => $"busybox-static; binary-size={new FileInfo(Binary).Length}; v1";

    public string? DefaultUser => null;

    public async Task PopulateAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken)
    {
        if (!File.Exists(Binary))
        {
            throw new FileNotFoundException("busybox-static is not installed (apt-get install busybox-static)", Binary);
        }
        var ldd = await ExternalCommand.RunAsync("ldd", [Binary], cancellationToken);
        if (ldd.Succeeded)
        {
            throw new InvalidOperationException($"{Binary} is dynamically linked; the test needs busybox-static: {ldd.StandardOutput}");
        }
        foreach (var dir in (string[])["bin", "etc", "proc", "sys", "dev", "tmp", "root"])
        {
            Directory.CreateDirectory(Path.Combine(rootfs, dir));
        }
        File.Copy(Binary, Path.Combine(rootfs, "bin", "busybox"));
        var applets = await ExternalCommand.RunAsync(Binary, ["--list"], cancellationToken);
        foreach (var applet in applets.StandardOutput.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (applet != "busybox")
            {
                File.CreateSymbolicLink(Path.Combine(rootfs, "bin", applet), "busybox");
            }
        }
        File.WriteAllText(Path.Combine(rootfs, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n");
        File.WriteAllText(Path.Combine(rootfs, "etc", "group"), "root:x:0:\n");
        Files.ChangeMode(Path.Combine(rootfs, "tmp"), 0b1_111_111_111); // 1777
        progress("busybox rootfs ready");
    }
}
