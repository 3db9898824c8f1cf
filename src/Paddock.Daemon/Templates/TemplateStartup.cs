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

    public async Task RunAsync(SandboxRecord sandbox, IReadOnlyDictionary<string, string> createEnv, CancellationToken cancellationToken)
    {
        var template = await registry.GetAsync(sandbox.TemplateId, cancellationToken);
        if (template?.StartCmd is not { Length: > 0 } startCmd)
        {
            return;
        }
        var env = template.EnvVars.Concat(createEnv).GroupBy(e => e.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Last().Value, StringComparer.Ordinal);
        string? failure = null;
        var output = new List<string>();
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(ReadyTimeout);
            await BuildCommand.StartDetachedAsync(client, sandbox.SandboxId, sandbox.EnvdAccessToken, startCmd, template.DefaultUser, env, template.Workdir, deadline.Token);
            if (template.ReadyCmd is { Length: > 0 } readyCmd)
            {
                // Bounded by the deadline: ReadyTimeout / ReadyPollInterval checks at most, plus the checks' own time.
                while (true)
                {
                    output.Clear();
                    var exit = await BuildCommand.RunAsync(client, sandbox.SandboxId, sandbox.EnvdAccessToken, readyCmd, template.DefaultUser, env, template.Workdir,
                        (line, _) => { if (output.Count < 20) { output.Add(line); } }, deadline.Token);
                    if (exit == 0)
                    {
                        break;
                    }
                    await Task.Delay(ReadyPollInterval, deadline.Token);
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            failure = $"the ready check '{template.ReadyCmd}' of template {template.TemplateId} did not succeed within {ReadyTimeout.TotalSeconds:0} s"
                + (output.Count > 0 ? $"; its last output: {string.Join(" | ", output)}" : "");
        }
        catch (IOException ex)
        {
            failure = $"the start command of template {template.TemplateId} could not be run: {ex.Message}";
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
}
