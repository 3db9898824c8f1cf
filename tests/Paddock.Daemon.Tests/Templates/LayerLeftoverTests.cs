using Paddock.Daemon.Templates;
using Paddock.Daemon.Tests.Api;

namespace Paddock.Daemon.Tests.Templates;

/// <summary>
/// What a daemon stopped half-way leaves in its layers directory, and what the start's sweep removes: staging
/// directories, a snapshot layer whose record was never written, a memory image without its template (issue 15);
/// never a layer or memory image a template names (whatever path the record spells it with), nor the build cache.
/// </summary>
public sealed class LayerLeftoverTests : IDisposable
{
    private readonly TempDir _dir = new();

    [Fact]
    public void Only_what_no_template_names_and_nothing_will_finish_is_a_leftover()
    {
        var layers = Path.Combine(_dir.Path, "layers");
        string[] kept = ["aaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaa.memory", "bbbbbbbbbbbbbbbbbbbb", "cache-0123456789abcdef0123456789abcdef", "scratch-tools"];
        string[] leftovers = [".build-1f2e", ".import-cccccccccccccccccccc", ".scratch-tools-99", "dddddddddddddddddddd", "eeeeeeeeeeeeeeeeeeee.memory", "bbbbbbbbbbbbbbbbbbbb.memory"];
        foreach (var name in kept.Concat(leftovers))
        {
            Directory.CreateDirectory(Path.Combine(layers, name));
        }
        var snapshot = new TemplateRecord
        {
            TemplateId = "aaaaaaaaaaaaaaaaaaaa",
            TeamId = "team",
            Kind = TemplateKind.Snapshot,
            // Spelled through another path to the same directory: names decide, not paths.
            Layers = ["/elsewhere/layers/aaaaaaaaaaaaaaaaaaaa/", "/templates/base"],
            OwnLayer = "/elsewhere/layers/aaaaaaaaaaaaaaaaaaaa",
            CreatedAt = DateTimeOffset.UnixEpoch,
        };
        // A template standing on another's layer names it too; that layer's own template is gone, and so its memory image goes.
        var child = snapshot with
        {
            TemplateId = "ffffffffffffffffffff",
            Layers = [Path.Combine(layers, "ffffffffffffffffffff"), Path.Combine(layers, "bbbbbbbbbbbbbbbbbbbb")],
            OwnLayer = Path.Combine(layers, "ffffffffffffffffffff"),
        };

        var found = TemplateRegistry.LeftoversIn(layers, [snapshot, child]).Select(Path.GetFileName).Order(StringComparer.Ordinal);

        Assert.Equal(leftovers.Order(StringComparer.Ordinal), found);
        Assert.Empty(TemplateRegistry.LeftoversIn(Path.Combine(_dir.Path, "none"), [snapshot]));
    }

    public void Dispose() => _dir.Dispose();
}
