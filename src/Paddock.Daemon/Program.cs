using Microsoft.Extensions.Configuration;
using Paddock.Daemon;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Sandboxes;
using Paddock.Daemon.Templates;

DaemonOptions options;
try
{
    options = DaemonOptions.Parse(args);
}
catch (ArgumentException ex)
{
    Console.Error.WriteLine($"paddockd: {ex.Message}");
    Console.Error.WriteLine(DaemonOptions.Usage);
    return 2;
}

// The runc tier and the template store read their settings from configuration; the daemon's options feed it.
var configuration = new ConfigurationBuilder()
    .AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["StateDirectory"] = options.StateDir,
        ["Templates:Directory"] = options.TemplatesDir ?? Path.Combine(options.StateDir, "templates"),
    })
    .AddEnvironmentVariables("PADDOCK_")
    .Build();

WebApplication app;
try
{
    app = DaemonHost.Build(options, services =>
    {
        services.AddRuncRuntime(configuration);
        services.AddTemplates(configuration);
        services.AddSingleton<ITemplateLookup, TemplateStoreLookup>();
    });
}
catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
{
    Console.Error.WriteLine($"paddockd: {ex.Message}");
    return 1;
}

await using (app)
{
    string? key;
    try
    {
        key = await DaemonHost.InitializeAsync(app, CancellationToken.None);
    }
    catch (RuntimeUnavailableException ex)
    {
        // Recovery at start asks the runtime for its sandboxes: a host without it cannot serve anything.
        Console.Error.WriteLine($"paddockd: cannot start: {ex.Message}");
        return 1;
    }
    if (key is not null)
    {
        // Shown once: only its hash is stored (and the key itself in the 0600 file named here).
        Console.WriteLine($"paddockd: created the first API key (also written to {Path.Combine(options.StateDir, Paddock.Daemon.Auth.ApiKeyBootstrap.FileName)}):");
        Console.WriteLine(key);
    }
    if (options.PrepareTemplate is { } template)
    {
        // Before the listener opens: the first create then finds the template ready (a base build takes minutes).
        var store = app.Services.GetRequiredService<TemplateStore>();
        // Its progress lines go to the log (TemplatesLog.BuildProgress) and nowhere else: printing them here too made
        // every line of a build appear twice on the console.
        await store.GetOrBuildAsync(template, CancellationToken.None);
    }
    await app.RunAsync();
}
return 0;
