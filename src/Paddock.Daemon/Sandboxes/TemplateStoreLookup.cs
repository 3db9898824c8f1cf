using Paddock.Daemon.Templates;

namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Creates find templates in the template store: a name (or alias) with a recipe (<c>base</c>, <c>code-interpreter</c>) is built on first use and reused
/// after; a name without one matches the newest built template of that name.
/// </summary>
internal sealed class TemplateStoreLookup(TemplateStore store) : ITemplateLookup
{
    public async ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken)
    {
        TemplateInfo? info;
        var recipe = store.RecipeFor(templateIdOrAlias);
        if (recipe is not null)
        {
            info = await store.EnsureAsync(recipe, cancellationToken);
        }
        else
        {
            info = store.List().Where(t => t.Name == templateIdOrAlias).MaxBy(t => t.BuiltAt);
        }
        return info is null ? null : new SandboxTemplate(info.Name, info.Name == templateIdOrAlias ? null : templateIdOrAlias, [info.RootfsPath], info.DefaultUser)
        {
            StartCmd = recipe?.StartCmd,
            ReadyCmd = recipe?.ReadyCmd,
        };
    }
}
