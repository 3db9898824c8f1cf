using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>A template lookup that knows the built base template as "base" only (its rootfs the one layer).</summary>
internal sealed class BaseOnly(TemplateInfo template) : ITemplateLookup
{
    public ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken) =>
        ValueTask.FromResult(templateIdOrAlias == "base" ? new SandboxTemplate("base", null, [template.RootfsPath], template.DefaultUser) : null);
}
