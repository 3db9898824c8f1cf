using Paddock.Daemon.Proxy;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Templates;

/// <summary>
/// A built template's start command and ready check, run in each new sandbox of the template before its create
/// returns: the start command detached, as the template's user, with its environment and working directory; then
/// the ready check again and again until it exits 0 (at most <see cref="ReadyTimeout"/>). A sandbox that does not
/// get ready is killed and its create fails with the reason, so a client never gets a half-started sandbox.
/// </summary>
internal sealed class TemplateStartup(TemplateRegistry registry, SandboxManager manager, SandboxHttpClient client)
{
    public static TimeSpan ReadyTimeout { get; } = TimeSpan.FromSeconds(120);

    private static readonly TimeSpan ReadyPollInterval = TimeSpan.FromMilliseconds(200);

    /// <summary>
    /// Runs the start command and the ready check of a sandbox just created; kills it and throws
    /// <see cref="SandboxCreateException"/> when it does not get ready. <paramref name="pooled"/>: the sandbox came from
    /// a warm pool, whose members ran both before they counted as ready (<see cref="PrepareAsync"/>), so nothing is run.
    /// </summary>
    public async Task RunAsync(SandboxRecord sandbox, IReadOnlyDictionary<string, string> createEnv, bool pooled, CancellationToken cancellationToken)
    {
        if (pooled)
        {
            return;
        }
        var template = await registry.GetAsync(sandbox.TemplateId, cancellationToken);
        string? failure;
        try
        {
            failure = template is null ? null : await StartAsync(Startup.Of(template), sandbox.SandboxId, sandbox.EnvdAccessToken, createEnv, cancellationToken);
        }
        catch
        {
            await manager.KillAsync(sandbox.SandboxId, "its create failed while starting the template's start command");
            throw;
        }
        if (failure is not null)
        {
            await manager.KillAsync(sandbox.SandboxId, failure);
            throw new SandboxCreateException(sandbox.SandboxId, $"sandbox could not be started: {failure}", null);
        }
    }

    /// <summary>
    /// Runs the start command and the ready check of template <paramref name="templateId"/> in a warm pool sandbox
    /// (issue 16: a pooled create of <c>code-interpreter</c> took 2.16 s to its first result, because the pool handed
    /// out members whose interpreter had not started yet). The template's own environment only: as in E2B, where the
    /// start command runs when the template is built, a create's variables do not reach it. Throws
    /// <see cref="IOException"/> when the sandbox does not get ready; the pool then destroys it and backs off.
    /// </summary>
    public async Task PrepareAsync(string sandboxId, SandboxTemplate template, string accessToken, CancellationToken cancellationToken)
    {
        // The registry's record; for a built-in (code-interpreter) whose record the registry has not written yet (a
        // pool fills at the daemon's start, before any create asked for the template: measured, the first member was
        // handed out without its server), the recipe's commands that the lookup carries.
        var startup = await registry.GetAsync(template.TemplateId, cancellationToken) is { } record
            ? Startup.Of(record)
            : new Startup(template.TemplateId, template.StartCmd, template.ReadyCmd, template.DefaultUser, template.Workdir,
                template.EnvVars ?? new Dictionary<string, string>());
        if (await StartAsync(startup, sandboxId, accessToken, new Dictionary<string, string>(), cancellationToken) is { } failure)
        {
            throw new IOException(failure);
        }
    }

    /// <summary>Null when the sandbox is ready (or the template has no start command), else why not.</summary>
    private async Task<string?> StartAsync(Startup template, string sandboxId, string? accessToken, IReadOnlyDictionary<string, string> createEnv,
        CancellationToken cancellationToken)
    {
        if (template.StartCmd is not { Length: > 0 } startCmd)
        {
            return null;
        }
        var env = template.EnvVars.Concat(createEnv).GroupBy(e => e.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last().Value, StringComparer.Ordinal);
        var output = new List<string>();
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(ReadyTimeout);
            await BuildCommand.StartDetachedAsync(client, sandboxId, accessToken, startCmd, template.DefaultUser, env, template.Workdir, deadline.Token);
            if (template.ReadyCmd is { Length: > 0 } readyCmd)
            {
                // Bounded by the deadline: ReadyTimeout / ReadyPollInterval checks at most, plus the checks' own time.
                while (true)
                {
                    output.Clear();
                    var exit = await BuildCommand.RunAsync(client, sandboxId, accessToken, readyCmd, template.DefaultUser, env, template.Workdir,
                        (line, _) => { if (output.Count < 20) { output.Add(line); } }, deadline.Token);
                    if (exit == 0)
                    {
                        break;
                    }
                    await Task.Delay(ReadyPollInterval, deadline.Token);
                }
            }
            return null;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return $"the ready check '{template.ReadyCmd}' of template {template.TemplateId} did not succeed within {ReadyTimeout.TotalSeconds:0} s"
                + (output.Count > 0 ? $"; its last output: {string.Join(" | ", output)}" : "");
        }
        catch (IOException ex)
        {
            return $"the start command of template {template.TemplateId} could not be run: {ex.Message}";
        }
    }

    /// <summary>What a start needs of a template.</summary>
    private sealed record Startup(string TemplateId, string? StartCmd, string? ReadyCmd, string? DefaultUser, string? Workdir,
        IReadOnlyDictionary<string, string> EnvVars)
    {
        public static Startup Of(TemplateRecord record) =>
            new(record.TemplateId, record.StartCmd, record.ReadyCmd, record.DefaultUser, record.Workdir, record.EnvVars);
    }
}
