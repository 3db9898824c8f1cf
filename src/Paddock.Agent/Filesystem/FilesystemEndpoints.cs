using Paddock.Agent.Connect;
using Paddock.Agent.Users;
using Paddock.Envd.Filesystem;

namespace Paddock.Agent.Filesystem;

/// <summary>Routes of the <c>filesystem.Filesystem</c> Connect service.</summary>
internal static class FilesystemEndpoints
{
    public const string ServiceName = "filesystem.Filesystem";

    public static IEndpointRouteBuilder MapFilesystemService(this IEndpointRouteBuilder app)
    {
        var services = app.ServiceProvider;
        var log = services.GetRequiredService<ILoggerFactory>().CreateLogger("Paddock.Agent.Filesystem");
        var watchers = new WatcherRegistry(new WatcherLimits(), log);
        services.GetRequiredService<IHostApplicationLifetime>().ApplicationStopping.Register(watchers.Dispose);
        var infos = new EntryInfos(services.GetRequiredService<UserDirectory>());
        var service = new FilesystemService(infos, watchers, services.GetRequiredService<AgentOptions>().DefaultWorkdir);

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
