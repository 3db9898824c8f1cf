using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Volumes;

/// <summary>Volumes on the gVisor tier: the same life as on runc (<see cref="VolumeScenario"/>), through runsc's gofer.</summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorVolumeTests(GvisorFixture fixture) : IAsyncLifetime
{
    private readonly TempDir _state = new();

    [GvisorFact]
    public async Task A_volume_carries_files_from_one_sandbox_to_the_next_within_its_limit_and_team()
    {
        await using var daemon = await TestDaemon.StartAsync(fixture.Runtime, _state.Path, templates: new BaseOnly(fixture.Base));
        await VolumeScenario.RunAsync(daemon, isolation: "gvisor");
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        await fixture.DestroyRunningAsync();
        VolumeScenario.Cleanup(_state.Path);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _state.Dispose();
    }
}
