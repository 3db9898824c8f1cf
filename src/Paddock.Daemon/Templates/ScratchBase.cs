using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;

namespace Paddock.Daemon.Templates;

/// <summary>
/// Docker's <c>FROM scratch</c> for template builds: an empty root filesystem as the base layer, and a toolbox layer
/// for the steps that need a shell on a base that has none. The base layer holds only <c>/tmp</c> (1777): the agent
/// puts its private HTTP/2 socket there (Paddock.Agent's H2cHandoff) and cannot start without it; runc makes the
/// mount points (/proc, /dev, /etc/hosts) itself. COPY and WORKDIR of a scratch build run their script with the
/// host's static busybox from the toolbox layer, which lies below the build's layers only while the step runs: what
/// the script writes goes to the step's new layer, the toolbox's own files (all under <see cref="ToolsDirectory"/>)
/// never do. RUN has no such help: it needs a /bin/sh of the build's own.
/// </summary>
internal static class ScratchBase
{
    /// <summary>The base's id in a build's record (its parent), and the image name that asks for it.</summary>
    public const string TemplateId = "scratch";

    /// <summary>Where the toolbox's busybox and its applet links are inside a build sandbox.</summary>
    public const string ToolsDirectory = "/.paddock-build-tools";

    public static string ToolShell => ToolsDirectory + "/sh";

    // What CopyScript and WORKDIR's mkdir call.
    private static readonly string[] Applets = ["sh", "mktemp", "tar", "gzip", "chown", "chmod", "find", "mkdir", "cp", "dirname", "rm", "true"];

    private static readonly string[] BusyboxPaths = ["/bin/busybox", "/usr/bin/busybox"];

    private static readonly SemaphoreSlim Gate = new(1, 1);

    /// <summary>The empty base, made under <paramref name="layersDirectory"/> on first use.</summary>
    public static async Task<TemplateRecord> EnsureAsync(string layersDirectory, CancellationToken cancellationToken)
    {
        var layer = await EnsureLayerAsync(layersDirectory, "scratch-v1", staging =>
        {
            var tmp = Directory.CreateDirectory(Path.Combine(staging, "tmp")).FullName;
            Files.ChangeMode(tmp, 0x3FF); // 1777, as /tmp always is
        }, cancellationToken);
        return new TemplateRecord
        {
            TemplateId = TemplateId,
            Kind = TemplateKind.Build,
            Layers = [layer],
            CreatedAt = DateTimeOffset.UtcNow,
        };
    }

    /// <summary>The toolbox layer; throws <see cref="TemplateBuildException"/> when the host has no static busybox.</summary>
    public static Task<string> EnsureToolsAsync(string layersDirectory, CancellationToken cancellationToken)
    {
        var busybox = BusyboxPaths.FirstOrDefault(File.Exists)
            ?? throw new TemplateBuildException(StatusCodes.Status400BadRequest,
                "COPY and WORKDIR on FROM scratch need a static busybox on this host (Debian: apt-get install busybox-static), and there is none");
        var version = new FileInfo(busybox).Length.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return EnsureLayerAsync(layersDirectory, "scratch-tools-" + version, staging =>
        {
            var tools = Directory.CreateDirectory(Path.Combine(staging, ToolsDirectory.TrimStart('/'))).FullName;
            File.Copy(busybox, Path.Combine(tools, "busybox"));
            Files.ChangeMode(Path.Combine(tools, "busybox"), 0x1ED);
            foreach (var applet in Applets)
            {
                File.CreateSymbolicLink(Path.Combine(tools, applet), "busybox");
            }
        }, cancellationToken);
    }

    /// <summary>Whether the layers have a /bin/sh (the file or a link; a whiteout over it is not looked for).</summary>
    public static bool HasShell(IReadOnlyList<string> layers) =>
        layers.Any(l => ((string[])["bin/sh", "usr/bin/sh"]).Any(p => Path.Exists(Path.Combine(l, p)) || new FileInfo(Path.Combine(l, p)).LinkTarget is not null));

    /// <summary>A COPY step with its owner as numbers: a scratch root filesystem has no passwd to look names up in.</summary>
    public static BuildStep NumericOwner(BuildStep step)
    {
        var owner = step.Args.Count > 2 && step.Args[2].Length > 0 ? step.Args[2] : "root";
        var numeric = owner switch
        {
            "root" or "root:root" => "0:0",
            _ when owner.Split(':').All(p => p.Length > 0 && p.All(char.IsAsciiDigit)) => owner.Contains(':', StringComparison.Ordinal) ? owner : owner + ":" + owner,
            _ => throw new TemplateBuildException(StatusCodes.Status400BadRequest,
                $"COPY --chown={owner} on FROM scratch: there is no /etc/passwd to look '{owner}' up in; use numeric ids (--chown=1000:1000)"),
        };
        var args = step.Args.ToList();
        while (args.Count < 3)
        {
            args.Add("");
        }
        args[2] = numeric;
        return step with { Args = args };
    }

    private static async Task<string> EnsureLayerAsync(string layersDirectory, string name, Action<string> populate, CancellationToken cancellationToken)
    {
        var layer = Path.Combine(layersDirectory, name);
        if (Directory.Exists(layer))
        {
            return layer;
        }
        await Gate.WaitAsync(cancellationToken);
        try
        {
            if (Directory.Exists(layer))
            {
                return layer;
            }
            Directory.CreateDirectory(layersDirectory);
            var staging = Path.Combine(layersDirectory, $".{name}-{Guid.NewGuid():N}");
            try
            {
                Directory.CreateDirectory(staging);
                Files.ChangeMode(staging, 0x1ED);
                populate(staging);
                // Owned by the sandboxes' root, as every template file is (see OwnershipShift).
                OwnershipShift.Shift(staging, IdMapping.Default);
                Directory.Move(staging, layer);
            }
            finally
            {
                if (Directory.Exists(staging))
                {
                    Directory.Delete(staging, recursive: true);
                }
            }
            return layer;
        }
        finally
        {
            Gate.Release();
        }
    }
}
