namespace Paddock.Daemon.Sandboxes;

/// <summary>
/// Finds the template a create names. The lifecycle needs only this much of templates; the template store itself
/// (building, listing, aliases) lives in Templates/.
/// </summary>
internal interface ITemplateLookup
{
    /// <summary>The template with this id or alias, or null when the host has none.</summary>
    ValueTask<SandboxTemplate?> FindAsync(string templateIdOrAlias, CancellationToken cancellationToken);
}

/// <summary>A template ready to start sandboxes from.</summary>
/// <param name="TemplateId">Its id (what records and the API call <c>templateID</c>).</param>
/// <param name="Alias">The name it was asked by, when that is not the id.</param>
/// <param name="Layers">Its read-only layer directories on the host, top first; the bottom one is a whole root filesystem.</param>
/// <param name="DefaultUser">The account calls that name none run as ("user" in <c>base</c>); null: root.</param>
/// <param name="EnvVars">Environment its sandboxes start with (a built template's ENV steps); null: none.</param>
/// <param name="Workdir">Where commands that name no cwd run (a built template's WORKDIR); null: the user's home.</param>
/// <param name="Isolation">The isolation tier its sandboxes run on unless the create or the team says otherwise; null: the daemon's.</param>
internal sealed record SandboxTemplate(string TemplateId, string? Alias, IReadOnlyList<string> Layers, string? DefaultUser = null,
    IReadOnlyDictionary<string, string>? EnvVars = null, string? Workdir = null, string? Isolation = null)
{
    /// <summary>A built-in's start command (<see cref="Templates.ITemplateRecipe.StartCmd"/>); null: none.</summary>
    public string? StartCmd { get; init; }

    /// <summary>A built-in's ready check (<see cref="Templates.ITemplateRecipe.ReadyCmd"/>); null: none.</summary>
    public string? ReadyCmd { get; init; }

    /// <summary>A memory snapshot's capture (<see cref="Templates.TemplateRecord.MemoryImage"/>): a sandbox from it on a tier that can is a restore of it.</summary>
    public string? MemoryImage { get; init; }
}
