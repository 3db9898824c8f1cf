namespace Paddock.Daemon.Templates;

/// <summary>
/// How to make a template's root filesystem. The store keys built templates by <see cref="Fingerprint"/>, so a
/// recipe whose fingerprint changes is built again, and one whose fingerprint is unchanged is reused.
/// </summary>
internal interface ITemplateRecipe
{
    /// <summary>The template's name ("base"); a directory name under the store.</summary>
    string Name { get; }

    /// <summary>
    /// Everything that decides the result, as text (packages, suite, setup steps, recipe format). Not the mirror:
    /// where packages come from is the host's business, and the same recipe from another mirror is the same template.
    /// </summary>
    string Fingerprint { get; }

    /// <summary>The account commands run as when a call names none (E2B's "user"); null: root.</summary>
    string? DefaultUser { get; }

    /// <summary>
    /// Fills the empty directory <paramref name="rootfs"/> with the template's files, owned as they are meant to be
    /// seen inside a sandbox (uid 0 for root); the store shifts them into the sandboxes' id range afterwards.
    /// </summary>
    Task PopulateAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken);

    /// <summary>Other names the template answers to (E2B's own template names); none by default.</summary>
    IReadOnlyList<string> Aliases => [];

    /// <summary>
    /// A command started (detached, as <see cref="DefaultUser"/>) in every new sandbox of the template before its
    /// create returns (<see cref="TemplateStartup"/>); null: none. Not part of <see cref="Fingerprint"/>: it changes
    /// no file of the build.
    /// </summary>
    string? StartCmd => null;

    /// <summary>The check run after <see cref="StartCmd"/> until it exits 0; null: none.</summary>
    string? ReadyCmd => null;
}
