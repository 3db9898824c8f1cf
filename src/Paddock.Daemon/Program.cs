using Paddock.Daemon;

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

WebApplication app;
try
{
    // The runc tier and the template store register themselves here once they are part of the build.
    app = DaemonHost.Build(options, _ => { });
}
catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
{
    Console.Error.WriteLine($"paddockd: {ex.Message}");
    return 1;
}

await using (app)
{
    var key = await DaemonHost.InitializeAsync(app, CancellationToken.None);
    if (key is not null)
    {
        // Shown once: only its hash is stored (and the key itself in the 0600 file named here).
        Console.WriteLine($"paddockd: created the first API key (also written to {Path.Combine(options.StateDir, Paddock.Daemon.Auth.ApiKeyBootstrap.FileName)}):");
        Console.WriteLine(key);
    }
    await app.RunAsync();
}
return 0;
