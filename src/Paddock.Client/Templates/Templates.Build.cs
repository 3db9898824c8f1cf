using Paddock.Client.Api;
using Paddock.Client.Builds;

namespace Paddock.Client;

/// <summary>How a template build runs and reports.</summary>
public sealed record TemplateBuildOptions
{
    /// <summary>vCPUs of the template's sandboxes (and of its build steps); null: the server's default.</summary>
    public int? CpuCount { get; init; }

    /// <summary>Memory of the template's sandboxes in MiB; null: the server's default.</summary>
    public int? MemoryMB { get; init; }

    /// <summary>Rebuild every step, cached or not.</summary>
    public bool Force { get; init; }

    /// <summary>Called with each line of the build's log as it comes (from the polling task; keep it short).</summary>
    public Action<TemplateBuildLogEntry>? OnLog { get; init; }

    /// <summary>How often the status is asked for while the build runs.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The longest the whole build may take before <see cref="SandboxTimeoutException"/>.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromHours(1);
}

/// <summary>One line of a build's log (E2B's <c>BuildLogEntry</c>).</summary>
/// <param name="Timestamp">When the server logged it.</param>
/// <param name="Level">info, warn (a step's standard error) or error.</param>
/// <param name="Message">The text.</param>
/// <param name="Step">The step it belongs to ("1", "2", ...), null for lines about the whole build.</param>
public sealed record TemplateBuildLogEntry(DateTimeOffset Timestamp, string Level, string Message, string? Step);

/// <summary>A finished build: the template to create sandboxes from.</summary>
/// <param name="TemplateId">The template's id (kept across rebuilds of the same name).</param>
/// <param name="BuildId">This build's id.</param>
/// <param name="Name">The name it can be asked by.</param>
public sealed record TemplateBuildResult(string TemplateId, string BuildId, string Name);

/// <summary>The build ran and failed (a step failed or could not run); nothing was registered.</summary>
public sealed class TemplateBuildFailedException : SandboxException
{
    /// <summary>Creates the error.</summary>
    public TemplateBuildFailedException(string message, string templateId, string buildId, string? step, IReadOnlyList<TemplateBuildLogEntry> stepLog)
        : base(message)
    {
        TemplateId = templateId;
        BuildId = buildId;
        Step = step;
        StepLog = stepLog;
    }

    /// <summary>The template the build was for.</summary>
    public string TemplateId { get; }

    /// <summary>The failed build.</summary>
    public string BuildId { get; }

    /// <summary>The step that failed ("1", "2", ...), when one did.</summary>
    public string? Step { get; }

    /// <summary>The failed step's log lines (or the build's last lines when no step is named).</summary>
    public IReadOnlyList<TemplateBuildLogEntry> StepLog { get; }
}

public static partial class Templates
{
    /// <summary>
    /// Builds <paramref name="template"/> as <paramref name="name"/> through E2B's build API: requests the build,
    /// packs and uploads each COPY's sources that the server does not have yet (a gzipped tar per step, keyed by
    /// the hash of what it copies), starts it, and follows its status and log until it is ready. Throws
    /// <see cref="TemplateBuildFailedException"/> when the build fails, <see cref="InvalidArgumentException"/> when the
    /// server refuses it (unknown base, unsupported step), <see cref="SandboxTimeoutException"/> past
    /// <see cref="TemplateBuildOptions.Timeout"/>.
    /// </summary>
    public static async Task<TemplateBuildResult> BuildAsync(TemplateBuilder template, string name, TemplateBuildOptions? options = null,
        ConnectionOptions? connection = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        options ??= new TemplateBuildOptions();
        var resolved = (connection ?? new ConnectionOptions()).Resolve();
        using var api = new ApiClient(resolved);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        deadline.CancelAfter(options.Timeout);
        try
        {
            var requested = await api.RequestBuildAsync(name, options.CpuCount, options.MemoryMB, deadline.Token).ConfigureAwait(false);
            var templateId = requested.TemplateId ?? throw new SandboxException("the server answered the build request without a template id");
            var buildId = requested.BuildId ?? throw new SandboxException("the server answered the build request without a build id");

            var context = template.ContextDirectory ?? Directory.GetCurrentDirectory();
            var steps = new List<BuildStepDto>(template.Steps.Count);
            foreach (var step in template.Steps)
            {
                string? filesHash = null;
                if (step.Kind == TemplateStepKind.Copy)
                {
                    using var packed = await CopySources.PackAsync(context, step.Args[0], step.Args[1], deadline.Token).ConfigureAwait(false);
                    filesHash = packed.Hash;
                    var link = await api.GetFileUploadLinkAsync(templateId, packed.Hash, deadline.Token).ConfigureAwait(false);
                    if (!link.Present)
                    {
                        // An upload may be large: it gets the build's own deadline, not the per-request one.
                        await api.UploadAsync(link, packed.ArchivePath, options.Timeout, deadline.Token).ConfigureAwait(false);
                    }
                }
                steps.Add(new BuildStepDto { Type = step.TypeName, Args = [.. step.Args], FilesHash = filesHash, Force = step.Force });
            }
            await api.StartBuildAsync(templateId, buildId, new BuildStartDto
            {
                FromTemplate = template.FromTemplateName,
                FromImage = template.FromImageName,
                Force = options.Force,
                Steps = steps,
                StartCmd = template.StartCommand,
                ReadyCmd = template.ReadyCommand,
            }, deadline.Token).ConfigureAwait(false);
            return await FollowAsync(api, templateId, buildId, name, options, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested)
        {
            throw new SandboxTimeoutException($"the build of template '{name}' did not finish within {options.Timeout.TotalSeconds:0} s", ex);
        }
    }

    private static async Task<TemplateBuildResult> FollowAsync(ApiClient api, string templateId, string buildId, string name, TemplateBuildOptions options, CancellationToken cancellationToken)
    {
        var log = new List<TemplateBuildLogEntry>();
        // Bounded by the caller's deadline (the build's timeout).
        while (true)
        {
            var status = await api.GetBuildStatusAsync(templateId, buildId, log.Count, cancellationToken).ConfigureAwait(false);
            foreach (var e in status.LogEntries ?? [])
            {
                var entry = new TemplateBuildLogEntry(e.Timestamp, e.Level ?? "info", e.Message ?? "", e.Step);
                log.Add(entry);
                options.OnLog?.Invoke(entry);
            }
            switch (status.Status)
            {
                case "ready":
                    return new TemplateBuildResult(templateId, buildId, name);
                case "error":
                    var step = status.Reason?.Step;
                    var stepLog = step is null ? log.TakeLast(50).ToList() : log.Where(l => l.Step == step).ToList();
                    throw new TemplateBuildFailedException(
                        $"the build of template '{name}' failed{(step is null ? "" : $" at step {step}")}: {status.Reason?.Message ?? "no reason given"}",
                        templateId, buildId, step, stepLog);
            }
            await Task.Delay(options.PollInterval, cancellationToken).ConfigureAwait(false);
        }
    }
}
