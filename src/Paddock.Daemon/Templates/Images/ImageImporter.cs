using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Templates.Images;

/// <summary>What an import made, with what of the image's config has no place in a template.</summary>
/// <param name="ImageLayers">How many layers the image had (the template has one: they are flattened).</param>
/// <param name="Entrypoint">The image's Entrypoint: recorded nowhere, since a sandbox runs the commands its client sends.</param>
/// <param name="Notes">What the import skipped or changed (device nodes, a user without an account), also in the daemon's log.</param>
internal sealed record ImportedImage(TemplateRecord Template, int ImageLayers, IReadOnlyList<string> Entrypoint, IReadOnlyList<string> Cmd, IReadOnlyList<string> Notes);

/// <summary>
/// Turns an image (an uploaded archive, an OCI layout directory, or a registry pull) into a template of the caller's
/// team: its layers are applied in order into one new directory under the registry's layers directory (flattened:
/// whiteouts become deletions, so the template is one ordinary overlay lower layer with no overlayfs-specific
/// markers), whose owners are then shifted into the sandboxes' id range (see <see cref="OwnershipShift"/>), and the
/// image config's Env, WorkingDir and User become the template's environment, working directory and default user.
/// The directory appears under its final name only once complete; a failed import leaves nothing registered and
/// no directory behind. Such a template starts sandboxes and serves as a build base like any other.
/// </summary>
internal sealed class ImageImporter : IDisposable
{
    private readonly TemplateRegistry _registry;
    private readonly DaemonOptions _options;
    private readonly ILogger<ImageImporter> _logger;
    private readonly Lazy<ImageRegistryClient?> _pulls;

    // One import at a time: each unpacks a whole image to disk, and two at once would only compete for it.
    private readonly SemaphoreSlim _gate = new(1, 1);

    public ImageImporter(TemplateRegistry registry, DaemonOptions options, ILogger<ImageImporter> logger)
    {
        _registry = registry;
        _options = options;
        _logger = logger;
        _pulls = new(() => options.ImageRegistry is { } url
            ? new ImageRegistryClient(url, options.ImageRegistryCa, Path.Combine(options.StateDir, "image-blobs"), logger)
            : null);
    }

    /// <summary>Uncompressed bytes one image may unpack to (and the most an uploaded archive may hold).</summary>
    public long MaxBytes => (long)_options.MaxImageMB << 20;

    private string ScratchDirectory => Path.Combine(_options.StateDir, "image-imports");

    /// <summary>Imports an uploaded archive (tar or tar.gz of an OCI layout or of <c>docker save</c> output).</summary>
    /// <remarks><paramref name="isolation"/>: the template's default isolation tier (checked by the caller); null: the daemon's.</remarks>
    public async Task<ImportedImage> ImportArchiveAsync(Stream body, string teamId, string name, CancellationToken cancellationToken, string? isolation = null)
    {
        await CheckNameAsync(name, teamId, cancellationToken);
        var scratch = Path.Combine(ScratchDirectory, ".upload-" + Guid.NewGuid().ToString("N"));
        using var files = await Refused(() => ArchiveImageFiles.UnpackAsync(body, scratch, MaxBytes, cancellationToken));
        var plan = await Refused(() => Task.Run(() => ImagePlans.FromFiles(files), cancellationToken));
        return await ImportAsync(plan, teamId, name, cancellationToken, isolation);
    }

    /// <summary>Imports an OCI image layout directory on this host.</summary>
    public async Task<ImportedImage> ImportDirectoryAsync(string directory, string teamId, string name, CancellationToken cancellationToken)
    {
        await CheckNameAsync(name, teamId, cancellationToken);
        var plan = await Refused(() => Task.Run(() => ImagePlans.FromFiles(new DirectoryImageFiles(directory)), cancellationToken));
        return await ImportAsync(plan, teamId, name, cancellationToken);
    }

    /// <summary>
    /// The template a build's <c>fromImage(ref)</c> starts from: a template of that name the team may use (an import),
    /// else the image pulled from the configured registry and imported under the name <paramref name="reference"/>.
    /// Throws <see cref="ImageImportException"/> naming the reference when there is neither.
    /// </summary>
    public async Task<TemplateRecord> ResolveForBuildAsync(string reference, string teamId, CancellationToken cancellationToken)
    {
        if (TemplateRegistry.IsValidName(reference) && await _registry.ResolveAsync(reference, teamId, cancellationToken) is { } existing)
        {
            return existing;
        }
        var client = _pulls.Value ?? throw ImageImportException.Invalid(
            $"image '{reference}' is not a template of this host and no image registry is configured: import it first (paddock template import FILE --name {reference}, or POST /templates/import?name=...), "
            + "or start paddockd with --image-registry URL");
        var parsed = ImageReference.Parse(reference, client.Registry);
        var name = TemplateRegistry.IsValidName(reference) ? reference : null;
        if (name is not null)
        {
            await CheckNameAsync(name, teamId, cancellationToken);
        }
        using var pull = new CancellationTokenSource(TimeSpan.FromMinutes(30));
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, pull.Token);
        var plan = await Refused(() => client.PullAsync(parsed, MaxBytes, linked.Token));
        return (await ImportAsync(plan, teamId, name, linked.Token)).Template;
    }

    private async Task CheckNameAsync(string name, string teamId, CancellationToken cancellationToken)
    {
        if (!TemplateRegistry.IsValidName(name))
        {
            throw ImageImportException.Invalid($"invalid template name '{name}': use 1-128 letters, digits and '_', '.', ':', '/', '-', starting with a letter or digit");
        }
        var all = await _registry.ListAsync(teamId, cancellationToken);
        if (name == "base" || all.Any(t => t.Kind == TemplateKind.Builtin && (t.TemplateId == name || t.Names.Contains(name, StringComparer.Ordinal))))
        {
            throw ImageImportException.Invalid($"'{name}' is the name of a built-in template; choose another name");
        }
    }

    private async Task<ImportedImage> ImportAsync(ImagePlan plan, string teamId, string? name, CancellationToken cancellationToken, string? isolation = null)
    {
        await _gate.WaitAsync(cancellationToken);
        var id = SandboxIds.NewId();
        var staging = Path.Combine(_registry.LayersDirectory, ".import-" + id);
        var layer = Path.Combine(_registry.LayersDirectory, id);
        try
        {
            ImagesLog.ImportStarted(_logger, plan.Description, id, teamId, plan.Layers.Count);
            var notes = new List<string>();
            void Note(string line)
            {
                ImagesLog.ImportNote(_logger, id, line);
                if (notes.Count < 100)
                {
                    notes.Add(line);
                }
            }
            Directory.CreateDirectory(_registry.LayersDirectory);
            await Refused(() => Task.Run(() =>
            {
                Directory.CreateDirectory(staging);
                Native.Files.ChangeMode(staging, 0b111_101_101);
                var budget = new ImportBudget(MaxBytes);
                foreach (var imageLayer in plan.Layers)
                {
                    LayerApplier.Apply(imageLayer, staging, budget, Note, cancellationToken);
                }
                OwnershipShift.Shift(staging, IdMapping.Default);
                return true;
            }, cancellationToken));
            var run = plan.Config.Config ?? new OciRunConfig();
            var record = new TemplateRecord
            {
                TemplateId = id,
                TeamId = teamId,
                Names = name is null ? [] : [name],
                Kind = TemplateKind.Image,
                Layers = [layer],
                OwnLayer = layer,
                SizeBytes = Files.AllocatedBytesBeneath(staging),
                CreatedAt = DateTimeOffset.UtcNow,
                DefaultUser = DefaultUser(run.User, staging, Note),
                EnvVars = Environment(run.Env, Note),
                Workdir = run.WorkingDir is { Length: > 0 } workdir ? workdir : null,
                Isolation = isolation,
            };
            Directory.Move(staging, layer);
            try
            {
                await _registry.RegisterBuildAsync(record, CancellationToken.None);
            }
            catch
            {
                Directory.Delete(layer, recursive: true);
                throw;
            }
            ImagesLog.ImportFinished(_logger, id, name ?? id, record.SizeBytes);
            return new ImportedImage(record, plan.Layers.Count, run.Entrypoint ?? [], run.Cmd ?? [], notes);
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
            _gate.Release();
        }
    }

    /// <summary>
    /// The config's User as an account the agent can find (it resolves names in the sandbox's /etc/passwd): a name,
    /// or a uid looked up there; "" and root mean root (null). One without an account falls back to root, with a note,
    /// since every command of the sandbox would fail otherwise.
    /// </summary>
    internal static string? DefaultUser(string? user, string rootfs, Action<string> note)
    {
        var wanted = user?.Split(':')[0] ?? "";
        if (wanted is "" or "root" or "0")
        {
            return null;
        }
        var passwd = Path.Combine(rootfs, "etc", "passwd");
        // Neither /etc nor the file may be a link: an absolute one would name the host's /etc here.
        var accounts = Native.Files.TryStat(Path.Combine(rootfs, "etc"), out var etc) == 0 && etc.IsDirectory
            && Native.Files.TryStat(passwd, out var s) == 0 && !s.IsSymlink && s.Size < (1 << 20)
            ? File.ReadAllLines(passwd).Select(l => l.Split(':')).Where(f => f.Length >= 3).ToList()
            : [];
        var match = accounts.FirstOrDefault(f => f[0] == wanted) ?? accounts.FirstOrDefault(f => f[2] == wanted);
        if (match is null)
        {
            note($"the image's user '{user}' has no account in its /etc/passwd; commands run as root unless they name a user");
            return null;
        }
        return match[0];
    }

    private static Dictionary<string, string> Environment(IReadOnlyList<string>? env, Action<string> note)
    {
        var vars = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var item in env ?? [])
        {
            var eq = item.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                note($"ignored the config's Env entry '{item}': not NAME=VALUE");
                continue;
            }
            vars[item[..eq]] = item[(eq + 1)..];
        }
        return vars;
    }

    /// <summary>Runs <paramref name="action"/>, logging a refusal (which the API turns into its 4xx) before it goes up.</summary>
    private async Task<T> Refused<T>(Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (ImageImportException ex)
        {
            ImagesLog.ImportRefused(_logger, ex.Message);
            throw;
        }
    }

    public void Dispose()
    {
        if (_pulls.IsValueCreated)
        {
            _pulls.Value?.Dispose();
        }
        _gate.Dispose();
    }
}
