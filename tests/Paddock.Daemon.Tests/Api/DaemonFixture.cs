using Paddock.Daemon.Tests.Sandboxes;

namespace Paddock.Daemon.Tests.Api;

/// <summary>One daemon and one runtime double shared by a test class; every test cleans up its own sandboxes.</summary>
public sealed class DaemonFixture : IAsyncLifetime
{
    private readonly TempDir _state = new();

    internal LocalAgentRuntime Runtime { get; } = new();

    internal TestDaemon Daemon { get; private set; } = null!;

    public async Task InitializeAsync() => Daemon = await TestDaemon.StartAsync(Runtime, _state.Path);

    public async Task DisposeAsync()
    {
        try
        {
            await Daemon.DisposeAsync();
        }
        finally
        {
            await Runtime.DisposeAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            _state.Dispose();
        }
    }
}
