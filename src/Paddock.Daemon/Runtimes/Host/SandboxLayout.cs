using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace Paddock.Daemon.Runtimes.Host;

/// <summary>
/// Where one sandbox's pieces live on the host, in either tier. The sandbox directory is also the OCI bundle
/// directory that runc or runsc reads.
/// </summary>
internal sealed partial class SandboxLayout
{
    // runc accepts [\w+-.]; we also require a leading letter or digit so an id can never be "." or "..".
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")]
    private static partial Regex ValidId();

    public SandboxLayout(ISandboxDirectories options, string sandboxId)
    {
        if (!IsValidId(sandboxId))
        {
            throw new ArgumentException($"invalid sandbox id '{sandboxId}': use 1-100 letters, digits, '_', '.', '-', starting with a letter or digit", nameof(sandboxId));
        }
        SandboxId = sandboxId;
        Directory = Path.Combine(options.SandboxesDirectory, sandboxId);
        NetnsFile = Path.Combine(options.NetnsDirectory, sandboxId);
    }

    public static bool IsValidId(string sandboxId) => ValidId().IsMatch(sandboxId);

    public string SandboxId { get; }

    /// <summary>The sandbox's directory and OCI bundle (config.json, rootfs).</summary>
    public string Directory { get; }

    /// <summary>An empty file that the sandbox's network namespace is bind-mounted on, which keeps it alive.</summary>
    public string NetnsFile { get; }

    /// <summary>
    /// The overlay's writable layer: every change the sandbox makes to its filesystem, and nothing else. On the
    /// sandbox's own disk (<see cref="DiskMount"/>) when it has one; decided by what exists, not by today's options,
    /// so a daemon restarted with other options still finds the layers of the sandboxes it re-adopts.
    /// </summary>
    public string Upper => Path.Combine(LayerParent, "upper");

    public string Work => Path.Combine(LayerParent, "work");

    /// <summary>The sparse ext4 image that bounds the writable layer (<see cref="SandboxDisk"/>).</summary>
    public string DiskImage => Path.Combine(Directory, DiskImageName);

    public const string DiskImageName = "disk.img";

    /// <summary>
    /// Where <see cref="DiskImage"/> is mounted. Its path must stay shorter than <see cref="Rootfs"/>'s: the destroy
    /// unmounts longest paths first, and the overlay must go before the filesystem under it.
    /// </summary>
    public string DiskMount => Path.Combine(Directory, DiskMountName);

    public const string DiskMountName = "disk";

    private string LayerParent => System.IO.Directory.Exists(DiskMount) ? DiskMount : Directory;

    /// <summary>The overlay mount (the template's layers below, <see cref="Upper"/> above): the container's root.</summary>
    public string Rootfs => Path.Combine(Directory, "rootfs");

    public string ConfigFile => Path.Combine(Directory, "config.json");

    public string HostsFile => Path.Combine(Directory, "hosts");

    public string HostnameFile => Path.Combine(Directory, "hostname");

    /// <summary>The sandbox's /etc/resolv.conf (bind-mounted) when it has egress.</summary>
    public string ResolvConfFile => Path.Combine(Directory, "resolv.conf");

    /// <summary>The agent's stdout and stderr, and the OCI runtime's own errors when it fails to run the container.</summary>
    public string LogFile => Path.Combine(Directory, "agent.log");

    public string PidFile => Path.Combine(Directory, "init.pid");

    public string MetadataFile => Path.Combine(Directory, "sandbox.json");

    /// <summary>
    /// Where the <paramref name="index"/>th of <see cref="SandboxSpec.Mounts"/> is bound on the host before the sandbox
    /// starts, and what the OCI config names as the mount's source (<see cref="SandboxFilesystem.BindMounts"/>).
    /// </summary>
    public string MountSource(int index) => Path.Combine(Directory, "mounts", index.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>
    /// Written last by a pause (<see cref="PauseMarker"/>): its presence is what makes the sandbox paused, so that a
    /// daemon killed in the middle of a pause leaves either a complete paused sandbox or a leftover.
    /// </summary>
    public string PausedFile => Path.Combine(Directory, "paused.json");

    /// <summary>A paused sandbox's memory image (gVisor's checkpoint), in the state directory, never on the sandbox's disk (its limit is the user's).</summary>
    public string CheckpointDirectory => Path.Combine(Directory, "checkpoint");

    /// <summary>Where a checkpoint is written before it is complete (renamed to <see cref="CheckpointDirectory"/> then).</summary>
    public string PartialCheckpointDirectory => Path.Combine(Directory, "checkpoint.partial");

    /// <summary>The end of the log, for error messages.</summary>
    public string LogTail(int maxChars = 2000)
    {
        try
        {
            var text = File.ReadAllText(LogFile).Trim();
            return text.Length > maxChars ? "…" + text[^maxChars..] : text;
        }
        catch (IOException)
        {
            return "";
        }
    }
}

/// <summary>Where a tier keeps its sandboxes' directories and network namespace files (each tier its own).</summary>
internal interface ISandboxDirectories
{
    string SandboxesDirectory { get; }

    string NetnsDirectory { get; }
}

/// <summary>
/// What the runtime records about a sandbox next to it, so that a new daemon instance can re-adopt it.
/// <see cref="AllowInternetAccess"/> is what the create asked for; the policy in force is the network link's record
/// (<see cref="Networking.SandboxLink"/>).
/// </summary>
internal sealed record SandboxMetadata(string SandboxId, IReadOnlyList<string> TemplateLayers, DateTimeOffset StartedAt, ResourceLimits Limits, bool AllowInternetAccess)
{
    /// <summary>
    /// The host directories of the sandbox's volumes, in the order of <see cref="SandboxLayout.MountSource"/>: a resume
    /// binds them there again (<see cref="SandboxFilesystem.Remount"/>). Null in metadata written before volumes.
    /// </summary>
    public IReadOnlyList<string>? VolumeDirectories { get; init; }

    public static SandboxMetadata? TryRead(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(path), SandboxMetadataJson.Default.SandboxMetadata);
        }
        catch (Exception ex) when (ex is IOException or JsonException)
        {
            return null;
        }
    }

    public void Write(string path) => File.WriteAllText(path, JsonSerializer.Serialize(this, SandboxMetadataJson.Default.SandboxMetadata));
}

[JsonSerializable(typeof(SandboxMetadata))]
[JsonSerializable(typeof(PauseMarker))]
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
internal sealed partial class SandboxMetadataJson : JsonSerializerContext;

/// <summary>
/// What a pause left on disk: whether it kept memory, and when. Written atomically (a temporary file renamed over it),
/// and only once everything the resume needs is on disk.
/// </summary>
internal sealed record PauseMarker(bool Memory, DateTimeOffset PausedAt)
{
    public static PauseMarker? TryRead(SandboxLayout layout)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllText(layout.PausedFile), SandboxMetadataJson.Default.PauseMarker);
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    public void Write(SandboxLayout layout)
    {
        var temporary = layout.PausedFile + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write))
        {
            JsonSerializer.Serialize(file, this, SandboxMetadataJson.Default.PauseMarker);
            // On disk before the rename makes it count: a host crash must not leave a marker without its content.
            file.Flush(flushToDisk: true);
        }
        File.Move(temporary, layout.PausedFile, overwrite: true);
    }

    public static void Remove(SandboxLayout layout) => File.Delete(layout.PausedFile);
}
