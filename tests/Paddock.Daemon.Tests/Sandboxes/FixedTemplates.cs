using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Tests.Sandboxes;

/// <summary>A template lookup that knows "base" (and its id "base-v1") only.</summary>
internal sealed class FixedTemplates : ITemplateLookup
{
    public ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken) =>
        ValueTask.FromResult(templateIdOrAlias switch
        {
            "base" => new SandboxTemplate("base-v1", "base", ["/nonexistent/rootfs/base"]),
            "base-v1" => new SandboxTemplate("base-v1", null, ["/nonexistent/rootfs/base"]),
            _ => null,
        });
}
