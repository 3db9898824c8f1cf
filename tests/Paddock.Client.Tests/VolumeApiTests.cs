namespace Paddock.Client.Tests;

/// <summary>
/// <see cref="Volumes"/> and <see cref="SandboxOptions.VolumeMounts"/> against the real paddockd: a volume made,
/// listed, mounted by two sandboxes in turn, refused deletion while mounted, then deleted.
/// </summary>
[Trait("needs", "daemon")]
public sealed class VolumeApiTests : IClassFixture<DaemonFixture>
{
    private readonly DaemonProcess _daemon;

    public VolumeApiTests(DaemonFixture fixture) => _daemon = fixture.Daemon;

    [Fact]
    public async Task A_volume_outlives_the_sandbox_that_wrote_to_it_and_cannot_be_deleted_while_mounted()
    {
        var connection = _daemon.Connection();
        var name = "client-" + Guid.NewGuid().ToString("N")[..8];
        var volume = await Volumes.CreateAsync(name, sizeMB: 16, connection, Limits.Token());
        try
        {
            Assert.Equal(name, volume.Name);
            Assert.Equal(16, volume.SizeMB);
            Assert.False(string.IsNullOrEmpty(volume.Token));
            Assert.Contains(await Volumes.ListAsync(connection, Limits.Token()), v => v.VolumeId == volume.VolumeId && v.Token is null);
            Assert.Equal(volume.Token, (await Volumes.GetAsync(volume.VolumeId, connection, Limits.Token())).Token);
            var duplicate = await Assert.ThrowsAnyAsync<SandboxException>(() => Volumes.CreateAsync(name, connection: connection, cancellationToken: Limits.Token()));
            Assert.Equal(409, duplicate.StatusCode);

            var options = new SandboxOptions
            {
                Connection = connection,
                Timeout = TimeSpan.FromMinutes(5),
                VolumeMounts = new Dictionary<string, string> { ["/data"] = name },
            };
            await using (var first = await Sandbox.CreateAsync("base", options, Limits.Token(120)))
            {
                await first.Commands.RunAsync("echo kept > /data/file", cancellationToken: Limits.Token());
                var busy = await Assert.ThrowsAnyAsync<SandboxException>(() => Volumes.DeleteAsync(volume.VolumeId, connection, Limits.Token()));
                Assert.Equal(409, busy.StatusCode);
                Assert.Contains("mounted", busy.Message, StringComparison.Ordinal);
            }
            await using (var second = await Sandbox.CreateAsync("base", options, Limits.Token(120)))
            {
                Assert.Equal("kept\n", (await second.Commands.RunAsync("cat /data/file", cancellationToken: Limits.Token())).Stdout);
            }
        }
        finally
        {
            await Volumes.DeleteAsync(volume.VolumeId, connection, Limits.Token(60));
        }
        await Assert.ThrowsAsync<NotFoundException>(() => Volumes.GetAsync(volume.VolumeId, connection, Limits.Token()));
    }
}
