// The control-plane helper replaces this with the daemon's host.
var app = WebApplication.CreateSlimBuilder(args).Build();
await app.RunAsync();
