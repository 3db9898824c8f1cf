using System.Text.Json.Serialization;

namespace Paddock.Daemon.Templates;

/// <summary>How a registered template came to be.</summary>
internal enum TemplateKind
{
    /// <summary>Built from a recipe on this host (<c>base</c>); public, owned by no team.</summary>
    Builtin,

    /// <summary>A sandbox's filesystem changes on top of that sandbox's template.</summary>
    Snapshot,

    /// <summary>Built from steps (E2B's template build API), each RUN a cached layer.</summary>
    Build,

    /// <summary>Imported from an OCI image or <c>docker save</c> archive, or pulled from a registry: one flattened layer it owns.</summary>
    Image,
}

/// <summary>One registered template: what sandboxes start from.</summary>
internal sealed record TemplateRecord
{
    public required string TemplateId { get; init; }

    /// <summary>The owning team; null for public built-ins.</summary>
    public string? TeamId { get; init; }

    /// <summary>Names it can also be asked by (E2B's aliases), unique within a team.</summary>
    public IReadOnlyList<string> Names { get; init; } = [];

    public required TemplateKind Kind { get; init; }

    /// <summary>Host directories, top first, as overlayfs's lowerdir takes them.</summary>
    public required IReadOnlyList<string> Layers { get; init; }

    /// <summary>The layer this template added (removed when the template is), null when it owns none.</summary>
    public string? OwnLayer { get; init; }

    /// <summary>Bytes its own layer allocates (for a built-in: its whole root filesystem).</summary>
    public long SizeBytes { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The template it was made on top of (a snapshot's sandbox's template).</summary>
    public string? ParentId { get; init; }

    public string? SourceSandboxId { get; init; }

    public string? DefaultUser { get; init; }

    public bool Public { get; init; }

    /// <summary>Environment every process of its sandboxes starts with (a build's ENV steps); a create's own envs win.</summary>
    public IReadOnlyDictionary<string, string> EnvVars { get; init; } = new Dictionary<string, string>();

    /// <summary>A build's last WORKDIR: where the start command runs (commands from the SDKs name their own).</summary>
    public string? Workdir { get; init; }

    /// <summary>A build's start command: every sandbox of the template starts it, detached, before the create returns.</summary>
    public string? StartCmd { get; init; }

    /// <summary>Run until it exits 0 after the start command; the create returns once it has.</summary>
    public string? ReadyCmd { get; init; }

    /// <summary>
    /// The isolation tier its sandboxes run on unless their create or team chooses (set at build or import; a
    /// snapshot takes its sandbox's tier); null: the daemon's default.
    /// </summary>
    public string? Isolation { get; init; }

    /// <summary>
    /// The memory capture of a snapshot taken on a tier that keeps memory (<see cref="MemoryImages"/>); null for a
    /// filesystem-only template. Found on disk, not stored: the capture exists once it is complete.
    /// </summary>
    public string? MemoryImage => OwnLayer is { } layer && Directory.Exists(MemoryImages.PathFor(layer)) ? MemoryImages.PathFor(layer) : null;

    /// <summary>Whether <paramref name="teamId"/> may see and use it: its own, or public.</summary>
    public bool IsVisibleTo(string teamId) => Public || TeamId == teamId;
}

[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class TemplateRecordJson : JsonSerializerContext;
