using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Paddock.Daemon.Native;

namespace Paddock.Daemon.Runtimes;

/// <summary>
/// The agent as every sandbox gets it: the NativeAOT <c>paddock-agent</c> binary with the exact shared libraries it
/// was linked against (found with ldd) and its own dynamic loader, in one directory that a runtime mounts read-only
/// at <see cref="MountPoint"/>. Starting the agent through the bundled loader
/// (<c>ld-linux-x86-64.so.2 --library-path /.paddock/lib paddock-agent</c>) makes it independent of the template's
/// libc: it runs in a Debian rootfs, an Alpine (musl) one, or a rootfs with no libc at all.
/// </summary>
/// <remarks>
/// The agent is the sandbox's PID 1, so it reaps orphans and must keep .NET's runtime from reaping its children:
/// as PID 1 the runtime's signal thread otherwise calls waitpid(-1) itself (dotnet/runtime pal_signal.c,
/// <c>reapAll = g_pid == 1 || ...</c>) and the agent loses every exit status (measured here before the agent took the
/// runtime's SIGCHLD hook: process.Process/Start streams ended without an end event).
/// </remarks>
internal sealed record AgentBundle(string Directory, string LoaderName, string Fingerprint)
{
    /// <summary>Where runtimes mount the bundle inside a sandbox.</summary>
    public const string MountPoint = "/.paddock";


    /// <summary>
    /// The code interpreter's directory name in the bundle (<c>/.paddock/interp</c>): its server binary and the
    /// kernels' Python and Node.js files, present when the agent was published with it (scripts/publish-agent).
    /// Only the code-interpreter template starts anything from it (issue 16).
    /// </summary>
    public const string InterpreterDirectory = "interp";

    /// <summary>The port the agent listens on inside every sandbox (E2B's envd port).</summary>
    public const int AgentPort = 49983;

    /// <summary>The command that starts the agent inside a sandbox (the bundled loader running it), before its own options.</summary>
    public IReadOnlyList<string> LaunchPrefix =>
        [$"{MountPoint}/lib/{LoaderName}", "--library-path", $"{MountPoint}/lib", $"{MountPoint}/paddock-agent"];
}

/// <summary>Builds <see cref="AgentBundle"/> directories, one per agent binary content, under the state directory.</summary>
internal sealed partial class AgentBundleBuilder
{
    // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader line "/lib64/ld-linux-x86-64.so.2 (0x...)".
    [GeneratedRegex(@"^\s*(?<name>\S+)\s+=>\s+(?<path>/\S+)\s+\(0x[0-9a-f]+\)\s*$")]
    private static partial Regex LibraryLine();

    [GeneratedRegex(@"^\s*(?<path>/\S*ld-linux\S*)\s+\(0x[0-9a-f]+\)\s*$")]
    private static partial Regex LoaderLine();

    private readonly string _bundlesDirectory;
    private readonly IReadOnlyList<string> _optionalLibraries;
    private readonly ILogger _logger;
    private readonly bool _executeOnlyLoader;

    /// <param name="bundlesDirectory">Parent of the bundle directories (one per binary content).</param>
    /// <param name="optionalLibraries">
    /// Libraries the agent loads with dlopen rather than links (ldd cannot see them), copied when the host has them.
    /// </param>
    /// <param name="logger">Where the build is logged.</param>
    /// <param name="executeOnlyLoader">
    /// Whether the loader is made execute-only (see <see cref="RestrictLoader"/>). The gVisor tier turns it off: the
    /// Sentry loads an executable by reading it, and refuses one it may not read ("failed to load
    /// /.paddock/lib/ld-linux-x86-64.so.2: permission denied", measured with runsc 2024-07-29).
    /// </param>
    public AgentBundleBuilder(string bundlesDirectory, IReadOnlyList<string> optionalLibraries, ILogger logger, bool executeOnlyLoader = true)
    {
        _bundlesDirectory = bundlesDirectory;
        _optionalLibraries = optionalLibraries;
        _logger = logger;
        _executeOnlyLoader = executeOnlyLoader;
    }

    /// <summary>
    /// .NET's cryptography (used for TLS and hashing) loads OpenSSL 3 with dlopen; without it in the bundle, a call
    /// that hashes fails in a template that has no libssl of its own.
    /// </summary>
    public static IReadOnlyList<string> DefaultOptionalLibraries { get; } = ["libssl.so.3", "libcrypto.so.3"];

    /// <summary>
    /// The bundle for the binary at <paramref name="agentBinary"/>, built on first use. A bundle is never changed
    /// once complete (sandboxes may have it mounted); a new binary gets a new directory.
    /// </summary>
    public async Task<AgentBundle> EnsureAsync(string agentBinary, CancellationToken cancellationToken)
    {
        if (!File.Exists(agentBinary))
        {
            throw new FileNotFoundException(
                $"the agent binary {agentBinary} does not exist: publish it with 'dotnet publish src/Paddock.Agent -c Release -o {Path.GetDirectoryName(agentBinary)}' or set Runc:AgentBinary",
                agentBinary);
        }
        // The code interpreter beside the agent (artifacts/agent/interp), copied into every bundle when present.
        var interpreter = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(agentBinary))!, AgentBundle.InterpreterDirectory);
        var fingerprint = await FingerprintAsync(agentBinary, System.IO.Directory.Exists(interpreter) ? interpreter : null, cancellationToken);
        var directory = Path.Combine(_bundlesDirectory, fingerprint);
        var manifest = Path.Combine(directory, "loader");
        if (File.Exists(manifest))
        {
            var existing = (await File.ReadAllTextAsync(manifest, cancellationToken)).Trim();
            // Bundles built before the loader was made execute-only get the mode now.
            SetLoaderMode(Path.Combine(directory, "lib", existing));
            return new AgentBundle(directory, existing, fingerprint);
        }

        System.IO.Directory.CreateDirectory(_bundlesDirectory);
        var staging = directory + ".tmp-" + Environment.ProcessId + "-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            var lib = System.IO.Directory.CreateDirectory(Path.Combine(staging, "lib")).FullName;
            File.Copy(agentBinary, Path.Combine(staging, "paddock-agent"));
            if (System.IO.Directory.Exists(interpreter))
            {
                CopyTree(interpreter, Path.Combine(staging, AgentBundle.InterpreterDirectory));
            }
            var (libraries, loader) = await ResolveAsync(agentBinary, cancellationToken);
            foreach (var name in _optionalLibraries)
            {
                if (await FindOnHostAsync(name, cancellationToken) is { } path)
                {
                    libraries.TryAdd(name, path);
                    var (deps, _) = await ResolveAsync(path, cancellationToken);
                    foreach (var (depName, depPath) in deps)
                    {
                        libraries.TryAdd(depName, depPath);
                    }
                }
            }
            foreach (var (name, path) in libraries)
            {
                // Copy the file the soname points at (File.Copy follows links), under the soname the loader looks for.
                File.Copy(path, Path.Combine(lib, name));
            }
            var loaderName = Path.GetFileName(loader);
            File.Copy(loader, Path.Combine(lib, loaderName), overwrite: true);
            SetLoaderMode(Path.Combine(lib, loaderName));
            await File.WriteAllTextAsync(Path.Combine(staging, "loader"), loaderName + "\n", cancellationToken);
            try
            {
                System.IO.Directory.Move(staging, directory);
            }
            catch (IOException) when (File.Exists(manifest))
            {
                // Another caller finished the same bundle first; theirs is identical.
            }
            RuntimeLog.AgentBundleBuilt(_logger, directory, libraries.Count + 1);
            return new AgentBundle(directory, loaderName, fingerprint);
        }
        finally
        {
            if (System.IO.Directory.Exists(staging))
            {
                System.IO.Directory.Delete(staging, recursive: true);
            }
        }
    }

    /// <summary>
    /// Makes the loader, the file the sandbox's init is exec'd from, execute-only (0711). Exec of a file the process
    /// may not read makes the process non-dumpable (the kernel's would_dump), so root inside the sandbox cannot
    /// ptrace the agent or open its /proc/1/fd and /proc/1/mem. The agent holds host descriptors that runc handed
    /// it (stdout and stderr are the host's agent.log): through ptrace, root inside could make it write without
    /// bound on the host's disk (found by tests/security, "ptrace the agent (pid 1) as root"). The owner (host
    /// root) is not mapped in the sandbox's user namespace, so root inside has only the "other" bits, and
    /// CAP_DAC_OVERRIDE does not apply. The commands the agent starts exec readable programs and stay dumpable.
    /// </summary>
    private void SetLoaderMode(string loaderPath)
    {
        if (_executeOnlyLoader)
        {
            RestrictLoader(loaderPath);
        }
        else
        {
            File.SetUnixFileMode(loaderPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
                | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        }
    }

    private static void RestrictLoader(string loaderPath) =>
        File.SetUnixFileMode(loaderPath, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute);

    /// <summary>
    /// The agent binary's SHA-256, and with an interpreter directory, the hash of the agent's hash and every file
    /// of it (relative path and content, in ordinal order): a changed kernel script makes a new bundle too.
    /// </summary>
    private static async Task<string> FingerprintAsync(string path, string? interpreter, CancellationToken cancellationToken)
    {
        byte[] hash;
        await using (var stream = File.OpenRead(path))
        {
            hash = await SHA256.HashDataAsync(stream, cancellationToken);
        }
        if (interpreter is not null)
        {
            using var all = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            all.AppendData(hash);
            foreach (var file in BundledFiles(interpreter).Order(StringComparer.Ordinal))
            {
                all.AppendData(System.Text.Encoding.UTF8.GetBytes(Path.GetRelativePath(interpreter, file) + "\0"));
                await using var stream = File.OpenRead(file);
                all.AppendData(await SHA256.HashDataAsync(stream, cancellationToken));
            }
            hash = all.GetHashAndReset();
        }
        return Convert.ToHexStringLower(hash)[..16];
    }

    /// <summary>The files of the interpreter directory that go into a bundle (not debug symbols or Python caches).</summary>
    private static IEnumerable<string> BundledFiles(string directory) =>
        System.IO.Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .Where(f => !f.EndsWith(".dbg", StringComparison.Ordinal) && !f.EndsWith(".pdb", StringComparison.Ordinal) && !f.Contains("__pycache__", StringComparison.Ordinal));

    private static void CopyTree(string source, string destination)
    {
        foreach (var file in BundledFiles(source))
        {
            var target = Path.Combine(destination, Path.GetRelativePath(source, file));
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    /// <summary>The libraries <paramref name="binary"/> links (soname to host path) and its dynamic loader, from ldd.</summary>
    private static async Task<(Dictionary<string, string> Libraries, string Loader)> ResolveAsync(string binary, CancellationToken cancellationToken)
    {
        var result = await ExternalCommand.RunAsync("ldd", [binary], cancellationToken);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"ldd {binary} failed: {result.Describe()}");
        }
        var libraries = new Dictionary<string, string>(StringComparer.Ordinal);
        string? loader = null;
        foreach (var line in result.StandardOutput.Split('\n'))
        {
            if (line.Contains("not found", StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"{binary} needs a library the host does not have: {line.Trim()}");
            }
            if (LibraryLine().Match(line) is { Success: true } m)
            {
                libraries[m.Groups["name"].Value] = m.Groups["path"].Value;
            }
            else if (LoaderLine().Match(line) is { Success: true } l)
            {
                loader = l.Groups["path"].Value;
            }
        }
        // A library's own ldd output names the loader too, as "/lib64/ld-linux-x86-64.so.2 => /lib/..." on some hosts.
        foreach (var name in libraries.Keys.Where(n => n.StartsWith("ld-linux", StringComparison.Ordinal)).ToList())
        {
            loader ??= libraries[name];
            libraries.Remove(name);
        }
        return (libraries, loader ?? throw new InvalidOperationException($"ldd {binary} named no dynamic loader: is it statically linked?"));
    }

    /// <summary>The host path of library <paramref name="soname"/> from the loader cache (ldconfig -p), or null.</summary>
    private static async Task<string?> FindOnHostAsync(string soname, CancellationToken cancellationToken)
    {
        var ldconfig = File.Exists("/sbin/ldconfig") ? "/sbin/ldconfig" : "ldconfig";
        var result = await ExternalCommand.RunAsync(ldconfig, ["-p"], cancellationToken);
        foreach (var line in result.StandardOutput.Split('\n'))
        {
            // "\tlibssl.so.3 (libc6,x86-64) => /lib/x86_64-linux-gnu/libssl.so.3"
            var trimmed = line.Trim();
            var arrow = trimmed.IndexOf(" => ", StringComparison.Ordinal);
            if (arrow > 0 && trimmed.StartsWith(soname + " ", StringComparison.Ordinal) && IsNativeArchitecture(trimmed[..arrow]))
            {
                return trimmed[(arrow + 4)..].Trim();
            }
        }
        return null;
    }

    private static bool IsNativeArchitecture(string entry) => System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture switch
    {
        System.Runtime.InteropServices.Architecture.X64 => entry.Contains("x86-64", StringComparison.Ordinal),
        System.Runtime.InteropServices.Architecture.Arm64 => entry.Contains("AArch64", StringComparison.OrdinalIgnoreCase),
        _ => true,
    };
}
