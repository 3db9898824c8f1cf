using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Creates find templates in the template store: a name with a recipe (<c>base</c>) is built on first use and reused
/// after; a name without one matches the newest built template of that name.
/// </summary>
internal sealed class TemplateStoreLookup(TemplateStore store) : ITemplateLookup
{
    public async ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken)
    {
        TemplateInfo? info;
        if (store.RecipeNames.Contains(templateIdOrAlias))
        {
            info = await store.GetOrBuildAsync(templateIdOrAlias, cancellationToken);
        }
        else
        {
            info = store.List().Where(t => t.Name == templateIdOrAlias).MaxBy(t => t.BuiltAt);
        }
        return info is null ? null : new SandboxTemplate(info.Name, null, [info.RootfsPath], info.DefaultUser);
    }
}
