using Paddock.Agent.Connect;
using Paddock.Agent.Hosting;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>Routes of the <c>filesystem.Filesystem</c> Connect service.</summary>
internal static class FilesystemEndpoints
{
    public const string ServiceName = "filesystem.Filesystem";

    public static AgentRoutes MapFilesystemService(this AgentRoutes app)
    {
        var services = app.Services;
        var log = services.Loggers.CreateLogger("Paddock.Agent.Filesystem");
        var watchers = new WatcherRegistry(new WatcherLimits(), log);
        services.Lifetime.ApplicationStopping.Register(watchers.Dispose);
        var infos = new EntryInfos(services.Users);
        var service = new FilesystemService(infos, watchers, services.Options.DefaultWorkdir);

        app.MapConnectUnary<StatRequest, StatResponse>(ServiceName, "Stat", service.Stat);
        app.MapConnectUnary<MakeDirRequest, MakeDirResponse>(ServiceName, "MakeDir", service.MakeDir);
        app.MapConnectUnary<MoveRequest, MoveResponse>(ServiceName, "Move", service.Move);
        app.MapConnectUnary<ListDirRequest, ListDirResponse>(ServiceName, "ListDir", service.ListDir);
        app.MapConnectUnary<RemoveRequest, RemoveResponse>(ServiceName, "Remove", service.Remove);
        app.MapConnectServerStream<WatchDirRequest, WatchDirResponse>(ServiceName, "WatchDir", service.WatchDir);
        app.MapConnectUnary<CreateWatcherRequest, CreateWatcherResponse>(ServiceName, "CreateWatcher", service.CreateWatcher);
        app.MapConnectUnary<GetWatcherEventsRequest, GetWatcherEventsResponse>(ServiceName, "GetWatcherEvents", service.GetWatcherEvents);
        app.MapConnectUnary<RemoveWatcherRequest, RemoveWatcherResponse>(ServiceName, "RemoveWatcher", service.RemoveWatcher);
        return app;
    }
}
