namespace Paddock.Client.Tests;

/// <summary>
/// Sandbox.SnapshotFilesystemAsync against the real paddockd: the returned id starts sandboxes with the first one's
/// files, and Templates.DeleteAsync is refused (409) while one runs from it. Needs root, runc and the base template.
/// </summary>
[Trait("needs", "daemon")]
public sealed class SnapshotTests : IClassFixture<DaemonFixture>
{
    private readonly DaemonProcess _daemon;

    public SnapshotTests(DaemonFixture fixture) => _daemon = fixture.Daemon;

    private SandboxOptions Options => new() { Connection = _daemon.Connection(), Timeout = TimeSpan.FromMinutes(5) };

    [Fact]
    public async Task A_filesystem_snapshot_is_a_template_id_that_starts_sandboxes_with_its_files()
    {
        await using var first = await Sandbox.CreateAsync("base", Options, Limits.Token(120));
        await first.Files.WriteAsync("/home/user/saved.txt", "saved", cancellationToken: Limits.Token());
        var templateId = await first.SnapshotFilesystemAsync(cancellationToken: Limits.Token(120));
        Assert.False(string.IsNullOrEmpty(templateId));
        Assert.True(await first.IsRunningAsync(Limits.Token()));

        string secondId;
        await using (var second = await Sandbox.CreateAsync(templateId, Options, Limits.Token(120)))
        {
            secondId = second.SandboxId;
            Assert.Equal(templateId, second.TemplateId);
            Assert.Equal("saved", await second.Files.ReadTextAsync("/home/user/saved.txt", cancellationToken: Limits.Token()));
            var refused = await Assert.ThrowsAsync<SandboxException>(() => Templates.DeleteAsync(templateId, _daemon.Connection(), Limits.Token()));
            Assert.Equal(409, refused.StatusCode);
            Assert.Contains(secondId, refused.Message, StringComparison.Ordinal);
        }
        Assert.Contains(await Templates.ListAsync(_daemon.Connection(), Limits.Token()), t => t.TemplateId == templateId);
        Assert.True(await Templates.DeleteAsync(templateId, _daemon.Connection(), Limits.Token()));
        Assert.False(await Templates.DeleteAsync(templateId, _daemon.Connection(), Limits.Token()));
        await Assert.ThrowsAsync<SandboxNotFoundException>(() => Sandbox.SnapshotFilesystemAsync("nosuchsandbox0000000", connection: _daemon.Connection(), cancellationToken: Limits.Token()));
    }
}
