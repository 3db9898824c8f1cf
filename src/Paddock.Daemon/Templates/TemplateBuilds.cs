using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Paddock.Daemon.Proxy;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates.Images;

namespace Paddock.Daemon.Templates;

/// <summary>One step of E2B's <c>TemplateStep</c>: RUN [cmd, user?], ENV [k, v, ...], WORKDIR [dir], USER [name], COPY ...</summary>
internal sealed record BuildStep(string Type, IReadOnlyList<string> Args, string? FilesHash, bool Force);

/// <summary>E2B's <c>TemplateBuildStartV2</c>.</summary>
internal sealed record BuildSpec(string? FromImage, string? FromTemplate, bool Force, IReadOnlyList<BuildStep> Steps, string? StartCmd, string? ReadyCmd);

/// <summary>One line of a build's log (E2B's <c>BuildLogEntry</c>).</summary>
internal sealed record BuildLogLine(DateTimeOffset Timestamp, string Level, string Message, string? Step);

/// <summary>A build the client may not start: the API's 400 (unsupported step, unknown base) or 404/409.</summary>
internal sealed class TemplateBuildException(int statusCode, string message) : Exception(message)
{
    public int StatusCode { get; } = statusCode;
}

/// <summary>Where a build is, with its log so far.</summary>
internal sealed class BuildState(string templateId, string buildId, string teamId, string name, int cpuCount, int memoryMB)
{
    private readonly List<BuildLogLine> _log = [];

    public string TemplateId { get; } = templateId;

    public string BuildId { get; } = buildId;

    public string TeamId { get; } = teamId;

    public string Name { get; } = name;

    public int CpuCount { get; } = cpuCount;

    public int MemoryMB { get; } = memoryMB;

    /// <summary>The tier the build's steps and the built template's sandboxes run on: asked for, else the base template's; null: the daemon's.</summary>
    public string? Isolation { get; set; }

    /// <summary>waiting (requested), building, ready or error: E2B's <c>TemplateBuildStatus</c>.</summary>
    public string Status { get; set; } = "waiting";

    public string? FailureMessage { get; set; }

    public string? FailureStep { get; set; }

    public void Log(string level, string message, string? step = null)
    {
        lock (_log)
        {
            // Bounded: a step that prints without end must not fill the daemon's memory.
            if (_log.Count < 20_000)
            {
                _log.Add(new BuildLogLine(DateTimeOffset.UtcNow, level, message, step));
            }
        }
    }

    public IReadOnlyList<BuildLogLine> LogFrom(int offset)
    {
        lock (_log)
        {
            return offset >= _log.Count ? [] : _log.GetRange(Math.Max(0, offset), _log.Count - Math.Max(0, offset));
        }
    }
}

/// <summary>
/// E2B's template build API on this host. A build starts from a template (<c>fromTemplate</c>) or from the Debian
/// base (<c>fromBaseImage</c>/<c>fromDebianImage</c>, which map to <c>base</c>), and runs its steps in order: ENV,
/// USER and WORKDIR change what later steps run with (WORKDIR also creates the directory, as Docker does); each RUN
/// and WORKDIR runs in a build sandbox started from the layers so far, whose filesystem changes become a new
/// read-only layer. Layers are cached by the hash of the base's layers and every step up to and including theirs,
/// so a rebuild with only the last step changed reuses the others ("CACHED" in its log), and templates share them.
/// A start command and ready check are recorded and run in every sandbox of the template as it starts
/// (<see cref="TemplateStartup"/>); on gVisor once per template version instead, its memory kept as the template's
/// start image (<see cref="StartImages"/>), as E2B snapshots it at build time.
/// <c>fromImage(ref)</c> of any other image starts from the team's imported template of that name, else pulls it from
/// the configured registry (<see cref="ImageImporter"/>); with neither, the build is refused with a 400 naming the ref.
/// Build state and logs live in memory: a daemon restart forgets builds in progress (their templates are not
/// registered, their cached layers stay).
/// </summary>
internal sealed class TemplateBuilds
{
    // The images E2B's SDK names for its Debian-based default, which our base template is.
    private static readonly string[] BaseImages = ["e2bdev/base", "e2bdev/base:latest", "debian:stable", "debian:bookworm", "debian:12", "debian:latest"];

    private readonly ConcurrentDictionary<string, BuildState> _builds = new(StringComparer.Ordinal);
    private readonly TemplateRegistry _registry;
    private readonly ITemplateRecords _records;
    private readonly SandboxManager _manager;
    private readonly ISandboxRuntime _runtime;
    private readonly SandboxHttpClient _client;
    private readonly DaemonOptions _options;
    private readonly TemplateFiles _files;
    private readonly ImageImporter _images;
    private readonly ILogger<TemplateBuilds> _logger;
    private readonly Teams.TeamDirectory _teams;
    private readonly Observability.DaemonMetrics? _metrics;

    public TemplateBuilds(TemplateRegistry registry, ITemplateRecords records, SandboxManager manager, ISandboxRuntime runtime,
        SandboxHttpClient client, TemplateFiles files, ImageImporter images, Teams.TeamDirectory teams, DaemonOptions options, ILogger<TemplateBuilds> logger,
        Observability.DaemonMetrics? metrics = null)
    {
        _teams = teams;
        _metrics = metrics;
        _images = images;
        _files = files;
        _registry = registry;
        _records = records;
        _manager = manager;
        _runtime = runtime;
        _client = client;
        _options = options;
        _logger = logger;
    }

    /// <summary>How long one RUN may take.</summary>
    public static TimeSpan StepTimeout { get; } = TimeSpan.FromMinutes(30);

    /// <summary>POST /v3/templates: a new build of the team's template <paramref name="name"/> (its id is kept across rebuilds).</summary>
    public async Task<BuildState> RequestAsync(string teamId, string name, int? cpuCount, int? memoryMB, CancellationToken cancellationToken, string? isolation = null)
    {
        if (!TemplateRegistry.IsValidName(name) || name.Contains('/', StringComparison.Ordinal))
        {
            throw new TemplateBuildException(StatusCodes.Status400BadRequest, $"invalid template name '{name}': use 1-128 letters, digits and '_', '.', '-' (and ':tag')");
        }
        var existing = (await _registry.ListAsync(teamId, cancellationToken))
            .FirstOrDefault(t => t.TeamId == teamId && t.Kind == TemplateKind.Build && t.Names.Contains(name, StringComparer.Ordinal));
        var state = new BuildState(existing?.TemplateId ?? SandboxIds.NewId(), Guid.NewGuid().ToString(), teamId, name,
            cpuCount ?? _options.DefaultCpuCount, memoryMB ?? _options.DefaultMemoryMB) { Isolation = isolation };
        _builds[state.BuildId] = state;
        return state;
    }

    public BuildState? Find(string templateId, string buildId, string teamId) =>
        _builds.TryGetValue(buildId, out var state) && state.TemplateId == templateId && state.TeamId == teamId ? state : null;

    /// <summary>
    /// POST /v2/templates/{id}/builds/{buildID}: checks the steps, then runs the build in the background. Throws
    /// <see cref="TemplateBuildException"/> for a build it cannot run; failures while running go to the build's status.
    /// </summary>
    public async Task StartAsync(string templateId, string buildId, string teamId, BuildSpec spec, CancellationToken cancellationToken)
    {
        var state = Find(templateId, buildId, teamId)
            ?? throw new TemplateBuildException(StatusCodes.Status404NotFound, $"build '{buildId}' of template '{templateId}' not found");
        var unsupported = spec.Steps.Where(s => s.Type is not ("RUN" or "ENV" or "WORKDIR" or "USER" or "COPY")).Select(s => s.Type).Distinct().ToList();
        if (unsupported.Count > 0)
        {
            throw new TemplateBuildException(StatusCodes.Status400BadRequest,
                $"step kinds not supported by this host yet: {string.Join(", ", unsupported)} (supported: RUN, ENV, WORKDIR, USER, COPY and what the SDK makes of them: aptInstall, pipInstall, npmInstall, makeDir, remove, rename, makeSymlink)");
        }
        if (spec.StartCmd is not { Length: > 0 } && spec.ReadyCmd is { Length: > 0 })
        {
            throw new TemplateBuildException(StatusCodes.Status400BadRequest, "a ready check needs a start command");
        }
        foreach (var step in spec.Steps)
        {
            var valid = step.Type switch
            {
                "RUN" => step.Args.Count is 1 or 2 && step.Args[0].Length > 0,
                "COPY" => step.Args.Count is >= 2 and <= 4 && IsSafeCopySource(step.Args[0]) && step.Args[1].Length > 0
                    && (step.Args.Count < 4 || step.Args[3].Length == 0 || step.Args[3].All(c => c is >= '0' and <= '7')),
                "ENV" => step.Args.Count > 0 && step.Args.Count % 2 == 0 && step.Args.Where((_, i) => i % 2 == 0).All(k => k.Length > 0 && !k.Contains('=', StringComparison.Ordinal)),
                _ => step.Args.Count == 1 && step.Args[0].Length > 0,
            };
            if (!valid)
            {
                throw new TemplateBuildException(StatusCodes.Status400BadRequest, step.Type == "COPY"
                    ? $"invalid COPY step [{string.Join(", ", step.Args)}]: the source must be a relative path inside the build context (no '..', no absolute path), the mode octal"
                    : $"invalid {step.Type} step: arguments [{string.Join(", ", step.Args)}]");
            }
            if (step.Type == "COPY" && (step.FilesHash is not { } hash || !TemplateFiles.IsValidHash(hash) || !_files.Exists(teamId, hash)))
            {
                throw new TemplateBuildException(StatusCodes.Status400BadRequest, $"the sources of COPY {step.Args[0]} were not uploaded (files hash '{step.FilesHash}')");
            }
        }
        var baseTemplate = IsScratch(spec) ? await ScratchBase.EnsureAsync(_registry.LayersDirectory, cancellationToken) : await ResolveBaseAsync(spec, teamId, cancellationToken);
        lock (state)
        {
            if (state.Status != "waiting")
            {
                throw new TemplateBuildException(StatusCodes.Status409Conflict, $"build '{buildId}' was started already");
            }
            state.Status = "building";
            state.Isolation ??= baseTemplate.Isolation;
        }
        // Not the request's token: the build outlives the request. Bounded by the steps' own timeouts.
        _ = Task.Run(() => RunAsync(state, baseTemplate, spec));
    }

    private async Task<TemplateRecord> ResolveBaseAsync(BuildSpec spec, string teamId, CancellationToken cancellationToken)
    {
        if (spec.FromTemplate is { Length: > 0 } from)
        {
            return await _registry.ResolveAsync(from, teamId, cancellationToken)
                ?? throw new TemplateBuildException(StatusCodes.Status400BadRequest, $"base template '{from}' not found");
        }
        var image = spec.FromImage ?? "e2bdev/base";
        if (!BaseImages.Contains(image, StringComparer.Ordinal))
        {
            // An imported image by its name, else a pull from the configured registry (Images/ImageImporter). The
            // pull runs within this request, so its failure is the build's 400 rather than a failed build later.
            try
            {
                return await _images.ResolveForBuildAsync(image, teamId, cancellationToken);
            }
            catch (ImageImportException ex)
            {
                throw new TemplateBuildException(StatusCodes.Status400BadRequest, $"fromImage('{image}'): {ex.Message}");
            }
        }
        return await _registry.ResolveAsync("base", teamId, cancellationToken)
            ?? throw new TemplateBuildException(StatusCodes.Status400BadRequest, "this host has no base template");
    }

    private async Task RunAsync(BuildState state, TemplateRecord baseTemplate, BuildSpec spec)
    {
        var layers = baseTemplate.Layers.ToList();
        var user = baseTemplate.DefaultUser;
        string? workdir = baseTemplate.Workdir;
        var env = new Dictionary<string, string>(baseTemplate.EnvVars, StringComparer.Ordinal);
        var key = Hash("paddock-build-v1\n" + string.Join("\n", layers));
        var scratch = baseTemplate.TemplateId == ScratchBase.TemplateId;
        long added = 0;
        var count = spec.Steps.Count;
        state.Log("info", $"Building template {state.Name} ({state.TemplateId}) from {baseTemplate.TemplateId}, build {state.BuildId}");
        string? stepName = null;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var buildSpan = Observability.DaemonTracing.Source.StartActivity("template.build");
        buildSpan?.SetTag("paddock.template.id", state.TemplateId);
        buildSpan?.SetTag("paddock.build.id", state.BuildId);
        try
        {
            for (var i = 0; i < count; i++)
            {
                var step = spec.Steps[i];
                stepName = (i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
                using var stepSpan = Observability.DaemonTracing.Source.StartActivity("template.build.step");
                stepSpan?.SetTag("paddock.build.step", stepName);
                stepSpan?.SetTag("paddock.build.step.type", step.Type);
                key = Hash($"{key}\n{step.Type}\0{string.Join('\0', step.Args)}\0{step.FilesHash}\0{user}\0{workdir}\0{string.Join('\0', env.OrderBy(e => e.Key, StringComparer.Ordinal).Select(e => e.Key + "=" + e.Value))}");
                var label = $"[{i + 1}/{count}] {step.Type} {string.Join(' ', step.Args)}";
                switch (step.Type)
                {
                    case "ENV":
                        for (var a = 0; a + 1 < step.Args.Count; a += 2)
                        {
                            env[step.Args[a]] = step.Args[a + 1];
                        }
                        state.Log("info", label, stepName);
                        continue;
                    case "USER":
                        user = step.Args[0];
                        state.Log("info", label, stepName);
                        continue;
                }
                // RUN, and WORKDIR, which creates its directory as Docker's does, and COPY, which unpacks the uploaded sources.
                string command;
                string? runAs;
                string? archive = null;
                if (scratch && step.Type == "RUN" && !ScratchBase.HasShell(layers))
                {
                    throw new TemplateBuildException(StatusCodes.Status400BadRequest,
                        $"step {stepName}: RUN needs /bin/sh, and this FROM scratch build has none: COPY a static shell (busybox) to /bin/sh before RUN, or build FROM base");
                }
                if (step.Type == "COPY")
                {
                    archive = _files.PathOf(state.TeamId, step.FilesHash!);
                    command = CopyScript(scratch ? ScratchBase.NumericOwner(step) : step, ArchiveInSandbox(step.FilesHash!), user, workdir);
                    runAs = "root";
                }
                else if (step.Type == "WORKDIR")
                {
                    workdir = step.Args[0];
                    command = "mkdir -p -- " + Quote(workdir);
                    runAs = "root";
                }
                else
                {
                    command = step.Args[0];
                    runAs = step.Args.Count > 1 && step.Args[1].Length > 0 ? step.Args[1] : user;
                }
                if (!(spec.Force || step.Force) && await _records.GetCachedLayerAsync(key, CancellationToken.None) is { } cached && Directory.Exists(cached.Layer))
                {
                    state.Log("info", "CACHED " + label, stepName);
                    layers.Insert(0, cached.Layer);
                    added += cached.SizeBytes;
                    continue;
                }
                state.Log("info", label, stepName);
                // FROM scratch: COPY and WORKDIR run with the toolbox layer's busybox below the build's own layers (its
                // files stay in that lower layer, out of the step's new one); there is no passwd, so "root" is the
                // agent's own account.
                var tools = scratch && step.Type is "COPY" or "WORKDIR" ? await ScratchBase.EnsureToolsAsync(_registry.LayersDirectory, CancellationToken.None) : null;
                if (scratch && runAs == "root")
                {
                    runAs = null;
                }
                if (tools is not null)
                {
                    command = $"PATH={ScratchBase.ToolsDirectory}; export PATH\n{command}";
                }
                var (layer, size) = await RunStepAsync(state, tools is null ? layers : [.. layers, tools], scratch ? null : user, runAs, command,
                    step.Type is "WORKDIR" or "COPY" ? null : workdir, env, key, stepName, archive, tools is null ? "/bin/sh" : ScratchBase.ToolShell);
                layers.Insert(0, layer);
                added += size;
            }
            stepName = null;
            var record = new TemplateRecord
            {
                TemplateId = state.TemplateId,
                TeamId = state.TeamId,
                Names = [state.Name.Split(':')[0]],
                Kind = TemplateKind.Build,
                Layers = layers,
                SizeBytes = added,
                CreatedAt = DateTimeOffset.UtcNow,
                ParentId = baseTemplate.TemplateId,
                DefaultUser = user,
                EnvVars = env,
                Workdir = workdir,
                StartCmd = spec.StartCmd is { Length: > 0 } ? spec.StartCmd : baseTemplate.StartCmd,
                ReadyCmd = spec.StartCmd is { Length: > 0 } ? spec.ReadyCmd : baseTemplate.ReadyCmd,
                Isolation = state.Isolation,
            };
            if (record.StartCmd is { } startCmd)
            {
                state.Log("info", $"Start command: {startCmd}; ready check: {record.ReadyCmd ?? "none"} (both run in every sandbox of the template before its create returns)");
            }
            await _registry.RegisterBuildAsync(record, CancellationToken.None);
            state.Log("info", $"Template {state.Name} ({state.TemplateId}) is ready: {layers.Count} layers");
            state.Status = "ready";
            _metrics?.TemplateBuild(ok: true, clock.Elapsed);
            TemplatesLog.BuildOfTemplateFinished(_logger, state.TemplateId, state.BuildId, "ready");
        }
        catch (Exception ex)
        {
            state.FailureMessage = ex is TemplateBuildException or IOException or SandboxCreateException or TimeoutException or OperationCanceledException
                ? ex.Message
                : "internal error: " + ex.Message;
            state.FailureStep = stepName;
            state.Log("error", "Build failed: " + state.FailureMessage, stepName);
            state.Status = "error";
            _metrics?.TemplateBuild(ok: false, clock.Elapsed);
            buildSpan?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, state.FailureMessage);
            TemplatesLog.BuildOfTemplateFailed(_logger, state.TemplateId, state.BuildId, ex);
        }
    }

    /// <summary>Runs one command in a build sandbox on <paramref name="layers"/> and saves its changes as the cached layer of <paramref name="key"/>.</summary>
    private async Task<(string Layer, long Size)> RunStepAsync(BuildState state, IReadOnlyList<string> layers, string? defaultUser, string? runAs,
        string command, string? workdir, IReadOnlyDictionary<string, string> env, string key, string stepName, string? archive, string shell)
    {
        var stageId = $"build-{state.BuildId}-{stepName}";
        _registry.AddStage(stageId, state.TeamId, layers, defaultUser);
        Store.SandboxRecord? sandbox = null;
        try
        {
            using var timeout = new CancellationTokenSource(StepTimeout);
            sandbox = await _manager.CreateAsync(new CreateSandboxCommand
            {
                Template = stageId,
                TeamId = state.TeamId,
                TimeoutSeconds = (int)StepTimeout.TotalSeconds + 300,
                CpuCount = state.CpuCount,
                MemoryMB = state.MemoryMB,
                DiskSizeMB = _options.DefaultDiskSizeMB,
                Metadata = new Dictionary<string, string> { ["paddock.templateBuild"] = state.BuildId },
                // The steps are untrusted code like any sandbox's: the team's tier binding holds for them too.
                TeamLimits = _teams.LimitsOf(state.TeamId),
                Isolation = state.Isolation,
            }, timeout.Token);
            if (archive is not null)
            {
                // As root; on FROM scratch (no passwd) as the agent's own account, which is root.
                await BuildCommand.UploadAsync(_client, sandbox.SandboxId, sandbox.EnvdAccessToken, archive, ArchiveInSandbox(Path.GetFileName(archive)), timeout.Token,
                    shell == "/bin/sh" ? "root" : null);
            }
            var exit = await BuildCommand.RunAsync(_client, sandbox.SandboxId, sandbox.EnvdAccessToken, command, runAs, env, workdir,
                (line, isError) => state.Log(isError ? "warn" : "info", line, stepName), timeout.Token, shell);
            if (exit != 0)
            {
                throw new TemplateBuildException(StatusCodes.Status400BadRequest, $"step {stepName} failed: '{command}' exited with code {exit}");
            }
            var staging = Path.Combine(_registry.LayersDirectory, $".build-{Guid.NewGuid():N}");
            var layer = Path.Combine(_registry.LayersDirectory, "cache-" + key[..32]);
            Directory.CreateDirectory(_registry.LayersDirectory);
            long size;
            // Awake: the snapshot pauses the container itself (runc pause), which fails on one the idle freezer froze.
            using (await _client.HoldAwakeAsync(sandbox.SandboxId, timeout.Token))
            {
                size = await _runtime.SnapshotFilesystemAsync(sandbox.SandboxId, staging, timeout.Token);
            }
            try
            {
                Directory.Move(staging, layer);
            }
            catch (IOException) when (Directory.Exists(layer))
            {
                // Another build made the same layer meanwhile: identical by its key, keep theirs.
                Directory.Delete(staging, recursive: true);
            }
            await _records.PutCachedLayerAsync(key, layer, size, DateTimeOffset.UtcNow, CancellationToken.None);
            return (layer, size);
        }
        finally
        {
            if (sandbox is not null)
            {
                await _manager.KillAsync(sandbox.SandboxId, $"template build {state.BuildId} step {stepName} finished");
            }
            _registry.RemoveStage(stageId);
        }
    }

    /// <summary>E2B's image name for an empty root filesystem (Docker's <c>FROM scratch</c>), which no registry resolves.</summary>
    private static bool IsScratch(BuildSpec spec) => spec.FromTemplate is not { Length: > 0 } && spec.FromImage == ScratchBase.TemplateId;

    private static string ArchiveInSandbox(string filesHash) => "/tmp/.paddock-copy-" + filesHash[..16];

    /// <summary>
    /// A relative path inside the build context, or a glob of one: the SDK checks this on its side, the daemon again,
    /// since the script below uses it unquoted so that the shell expands globs.
    /// </summary>
    private static bool IsSafeCopySource(string source) =>
        source.Length is > 0 and <= 512 && source[0] != '/' && !source.Split('/').Contains("..")
        && source.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or '/' or '*' or '?' or '[' or ']' or '@' or '+' or ',');

    private static string Quote(string text) => "'" + text.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>
    /// Docker's COPY in shell, run as root in the build sandbox: unpack the archive (GNU tar detects gzip itself) in
    /// a scratch directory, give the files the owner (the step's user, else the build's current one) and mode, then
    /// copy each match of the source: a directory's contents into the destination, a file to the destination, or
    /// into it when it ends in '/' or there are several matches. A relative destination is relative to WORKDIR.
    /// The archive and the scratch directory are removed, so they are not part of the layer.
    /// </summary>
    private static string CopyScript(BuildStep step, string archiveInSandbox, string? buildUser, string? workdir)
    {
        var source = step.Args[0].TrimEnd('/');
        var dest = step.Args[1];
        if (!dest.StartsWith('/'))
        {
            dest = (workdir ?? "/home/" + (buildUser ?? "root")).TrimEnd('/') + "/" + dest;
        }
        var owner = step.Args.Count > 2 && step.Args[2].Length > 0 ? step.Args[2] : buildUser ?? "root";
        var mode = step.Args.Count > 3 ? step.Args[3] : "";
        return $$"""
            set -e
            scratch=$(mktemp -d)
            trap 'rm -rf "$scratch" {{Quote(archiveInSandbox)}}' EXIT
            if gzip -t {{Quote(archiveInSandbox)}} 2>/dev/null; then gzip -dc {{Quote(archiveInSandbox)}} | tar -xf - -C "$scratch"; else tar -xf {{Quote(archiveInSandbox)}} -C "$scratch"; fi
            cd "$scratch"
            chown -R {{Quote(owner)}}: . 2>/dev/null || chown -R {{Quote(owner)}} .
            {{(mode.Length > 0 ? $"find . -mindepth 1 ! -type l -exec chmod {mode} {{}} +" : "true")}}
            dest={{Quote(dest)}}
            set -- {{source}}
            if [ "$#" -eq 0 ] || [ ! -e "$1" ] && [ ! -L "$1" ]; then echo "COPY: {{source}} matches nothing in the uploaded sources" >&2; exit 1; fi
            for s in "$@"; do
              if [ -d "$s" ] && [ ! -L "$s" ]; then mkdir -p "$dest"; cp -a "$s"/. "$dest"/
              elif [ "$#" -gt 1 ] || [ "${dest%/}" != "$dest" ]; then mkdir -p "$dest"; cp -a "$s" "$dest"/
              else mkdir -p "$(dirname "$dest")"; cp -a "$s" "$dest"
              fi
            done
            """;
    }

    private static string Hash(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));
}
