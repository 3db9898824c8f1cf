// What an AI agent's tool loop does with a sandbox: write code the model produced, run it, read the result.
// Run it with a daemon up (paddock up) and PADDOCK_API_KEY set, or as root with the daemon's default state dir:
//   dotnet run --project samples/AgentLoop
using Paddock.Client;

var template = args.Length > 0 ? args[0] : Sandbox.DefaultTemplate;
using var cancel = new CancellationTokenSource(TimeSpan.FromMinutes(2));

var connection = new ConnectionOptions
{
    // PADDOCK_API_KEY wins; else the key paddockd wrote on its first start, when this user may read it.
    ApiKey = Environment.GetEnvironmentVariable("PADDOCK_API_KEY") is { Length: > 0 } key ? key : ReadKeyFile(),
};

// `await using` kills the sandbox when the block ends, even when something below throws.
await using var sandbox = await Sandbox.CreateAsync(template, new SandboxOptions { Connection = connection, Timeout = TimeSpan.FromMinutes(5) }, cancel.Token);
Console.WriteLine($"sandbox {sandbox.SandboxId} is up");

const string program = """
    import json, math
    primes = [n for n in range(2, 100) if all(n % d for d in range(2, math.isqrt(n) + 1))]
    with open("/tmp/primes.json", "w") as f:
        json.dump({"count": len(primes), "largest": primes[-1]}, f)
    print(f"found {len(primes)} primes")
    """;
await sandbox.Files.WriteAsync("/tmp/primes.py", program, cancellationToken: cancel.Token);

var run = await sandbox.Commands.RunAsync("python3 /tmp/primes.py", new CommandOptions
{
    OnStdout = text => Console.Write($"[sandbox] {text}"),
}, cancel.Token);
Console.WriteLine($"exit code {run.ExitCode}");

var result = await sandbox.Files.ReadTextAsync("/tmp/primes.json", cancellationToken: cancel.Token);
Console.WriteLine($"the program wrote: {result}");

var killed = await sandbox.KillAsync(cancel.Token);
Console.WriteLine(killed ? "sandbox killed" : "sandbox was already gone");
return 0;

static string? ReadKeyFile()
{
    var path = Path.Combine(Environment.GetEnvironmentVariable("PADDOCK_STATE_DIR") is { Length: > 0 } dir ? dir : "/var/lib/paddock", "api-key");
    try
    {
        return File.ReadAllText(path).Trim();
    }
    catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
    {
        Console.Error.WriteLine($"no PADDOCK_API_KEY and {path} is not readable ({ex.Message}); the daemon will refuse the calls");
        return null;
    }
}
