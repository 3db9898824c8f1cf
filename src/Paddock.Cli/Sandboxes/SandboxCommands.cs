using System.CommandLine;
using System.Globalization;
using Paddock.Cli.Output;
using Paddock.Client;

namespace Paddock.Cli.Sandboxes;

/// <summary>`paddock sandbox create|ls|info|kill|timeout|pause|resume|fork`.</summary>
internal static class SandboxCommands
{
    public static Command Build()
    {
        var command = new Command("sandbox", "Create, list, inspect and kill sandboxes");
        command.Subcommands.Add(Create());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Info());
        command.Subcommands.Add(Kill());
        command.Subcommands.Add(Timeout());
        command.Subcommands.Add(Pause());
        command.Subcommands.Add(Resume());
        command.Subcommands.Add(Fork());
        return command;
    }

    private static Command Pause()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var memory = new Option<string?>("--memory") { Description = "true: keep memory (its processes go on after a resume); false: the filesystem only (default: what its tier keeps)" };
        var command = new Command("pause", "Pause a sandbox; `paddock sandbox resume` brings it back") { id, memory };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            bool? keep = parse.GetValue(memory) switch
            {
                null => null,
                "true" => true,
                "false" => false,
                var other => throw new CliException(ExitCodes.Usage, $"--memory must be true or false, not '{other}'"),
            };
            var sandboxId = parse.GetValue(id)!;
            if (!await Sandbox.PauseAsync(sandboxId, keep, settings.Connection, ct))
            {
                await Console.Error.WriteLineAsync($"paddock: sandbox '{sandboxId}' is already paused");
                return ExitCodes.Failure;
            }
            Console.Out.Write($"paused {sandboxId}\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Fork()
    {
        var id = new Argument<string>("id") { Description = "The running sandbox to fork" };
        var count = new Option<int>("--count") { Description = "How many copies (1-100)", DefaultValueFactory = _ => 1 };
        var timeout = new Option<int?>("--timeout") { Description = "Seconds each copy lives once it runs (default: the server's)" };
        var command = new Command("fork", "Fork a running sandbox: copies with its memory, processes and files; prints one new id per line") { id, count, timeout };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var n = parse.GetValue(count);
            if (n is < 1 or > 100)
            {
                throw new CliException(ExitCodes.Usage, $"--count must be between 1 and 100, not {n}");
            }
            var seconds = parse.GetValue(timeout);
            if (seconds is < 0)
            {
                throw new CliException(ExitCodes.Usage, "--timeout must not be negative");
            }
            var results = await Sandbox.ForkAsync(parse.GetValue(id)!, n, seconds is { } s ? TimeSpan.FromSeconds(s) : null, settings.Connection, killOnDispose: false, ct);
            var failed = 0;
            foreach (var result in results)
            {
                if (result.Sandbox is { } copy)
                {
                    Console.Out.Write(copy.SandboxId + "\n");
                    await copy.DisposeAsync();
                }
                else
                {
                    failed++;
                    await Console.Error.WriteLineAsync($"paddock: a copy did not start: {result.Error?.Message}");
                }
            }
            return failed == 0 ? ExitCodes.Ok : ExitCodes.Failure;
        }));
        return command;
    }

    private static Command Resume()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var timeout = new Option<int?>("--timeout") { Description = "Seconds it lives from now (default 300)" };
        var command = new Command("resume", "Resume a paused sandbox (a running one only gets its timeout extended)") { id, timeout };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var seconds = parse.GetValue(timeout);
            if (seconds is <= 0)
            {
                throw new CliException(ExitCodes.Usage, "--timeout must be a positive number of seconds");
            }
            await using var sandbox = await Sandbox.ResumeAsync(parse.GetValue(id)!, new SandboxConnectOptions
            {
                Connection = settings.Connection,
                Timeout = seconds is { } s ? TimeSpan.FromSeconds(s) : null,
                KillOnDispose = false,
            }, ct);
            var info = await sandbox.GetInfoAsync(ct);
            Console.Out.Write($"{info.SandboxId} {State(info.State)}, ends at {Time(info.EndAt)}\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Create()
    {
        var template = new Argument<string>("template") { Description = "The template to start from", DefaultValueFactory = _ => Sandbox.DefaultTemplate };
        var timeout = new Option<int?>("--timeout") { Description = "Seconds the sandbox lives (default: the daemon's)" };
        var metadata = new Option<string[]>("--metadata") { Description = "KEY=VALUE stored with the sandbox (repeatable)" };
        var env = new Option<string[]>("--env", "-e") { Description = "KEY=VALUE for every process in the sandbox (repeatable)" };
        var isolation = new Option<string?>("--isolation") { Description = "Isolation tier: runc or gvisor (default: the team's, the template's, else the daemon's)" };
        var volume = new Option<string[]>("--volume", "-v") { Description = "NAME:/PATH: mount the team's volume NAME at /PATH (repeatable)" };
        var command = new Command("create", "Create a sandbox and print its id") { template, timeout, metadata, env, isolation, volume };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var seconds = parse.GetValue(timeout);
            if (seconds is <= 0)
            {
                throw new CliException(ExitCodes.Usage, "--timeout must be a positive number of seconds");
            }
            await using var sandbox = await Sandbox.CreateAsync(parse.GetValue(template), new SandboxOptions
            {
                Connection = settings.Connection,
                Timeout = seconds is { } s ? TimeSpan.FromSeconds(s) : null,
                Metadata = CliApp.Pairs(parse.GetValue(metadata), "--metadata"),
                Envs = CliApp.Pairs(parse.GetValue(env), "--env"),
                Isolation = parse.GetValue(isolation),
                VolumeMounts = VolumeMounts(parse.GetValue(volume)),
                KillOnDispose = false,
            }, ct);
            Console.Out.Write(parse.GetValue(CliApp.Json)
                ? CliJson.Write(new CreatedSandbox(sandbox.SandboxId, sandbox.TemplateId, sandbox.EnvdVersion)) + "\n"
                : sandbox.SandboxId + "\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>`--volume NAME:/PATH` values as the SDK's mounts (path to name); a malformed one is a usage error.</summary>
    internal static IReadOnlyDictionary<string, string>? VolumeMounts(string[]? values)
    {
        if (values is not { Length: > 0 })
        {
            return null;
        }
        var mounts = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var value in values)
        {
            var colon = value.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || colon == value.Length - 1)
            {
                throw new CliException(ExitCodes.Usage, $"--volume '{value}': expected NAME:/PATH");
            }
            if (!mounts.TryAdd(value[(colon + 1)..], value[..colon]))
            {
                throw new CliException(ExitCodes.Usage, $"--volume '{value}': two volumes at {value[(colon + 1)..]}");
            }
        }
        return mounts;
    }

    private static Command List()
    {
        var state = new Option<string[]>("--state") { Description = "Only sandboxes in these states: running, paused" };
        var metadata = new Option<string[]>("--metadata") { Description = "Only sandboxes with this KEY=VALUE (repeatable)" };
        var command = new Command("ls", "List sandboxes") { state, metadata };
        command.Aliases.Add("list");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var states = parse.GetValue(state)?.Select(s => s.ToLowerInvariant() switch
            {
                "running" => SandboxState.Running,
                "paused" => SandboxState.Paused,
                _ => throw new CliException(ExitCodes.Usage, $"--state is running or paused, not '{s}'"),
            }).ToArray();
            var filter = new SandboxListFilter { States = states is { Length: > 0 } ? states : null, Metadata = CliApp.Pairs(parse.GetValue(metadata), "--metadata") };
            var sandboxes = new List<SandboxInfo>();
            await foreach (var s in Sandbox.ListAsync(filter, settings.Connection, ct))
            {
                sandboxes.Add(s);
            }
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(sandboxes) + "\n");
                return ExitCodes.Ok;
            }
            var table = new Table("SANDBOX ID", "TEMPLATE", "STATE", "ISOLATION", "STARTED", "ENDS", "CPUS", "MEMORY");
            foreach (var s in sandboxes)
            {
                table.Add(s.SandboxId, s.Alias ?? s.TemplateId, State(s.State), s.Isolation ?? "-", Time(s.StartedAt), Time(s.EndAt), s.CpuCount.ToString(CultureInfo.InvariantCulture), $"{s.MemoryMB} MiB");
            }
            Console.Out.Write(table.Render());
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Info()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var command = new Command("info", "Show a sandbox") { id };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var info = await Sandbox.GetInfoAsync(parse.GetValue(id)!, settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(info) + "\n");
                return ExitCodes.Ok;
            }
            var lines = new List<(string, string)>
            {
                ("Sandbox", info.SandboxId),
                ("Template", info.Alias is { } alias ? $"{alias} ({info.TemplateId})" : info.TemplateId),
                ("State", State(info.State)),
                ("Isolation", info.Isolation ?? "-"),
                ("Started", Time(info.StartedAt)),
                ("Ends", Time(info.EndAt)),
                ("CPUs", info.CpuCount.ToString(CultureInfo.InvariantCulture)),
                ("Memory", $"{info.MemoryMB} MiB"),
                ("Disk", $"{info.DiskSizeMB} MiB"),
                ("Envd", info.EnvdVersion ?? "-"),
            };
            lines.AddRange(info.Metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => ($"Metadata {kv.Key}", kv.Value)));
            var width = lines.Max(l => l.Item1.Length) + 2;
            foreach (var (name, value) in lines)
            {
                Console.Out.Write($"{(name + ":").PadRight(width)}{value}\n");
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Kill()
    {
        var ids = new Argument<string[]>("id") { Description = "The sandboxes to kill", Arity = ArgumentArity.OneOrMore };
        var command = new Command("kill", "Kill sandboxes") { ids };
        command.Aliases.Add("rm");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var code = ExitCodes.Ok;
            foreach (var id in parse.GetValue(ids)!)
            {
                if (await Sandbox.KillAsync(id, settings.Connection, ct))
                {
                    Console.Out.Write($"killed {id}\n");
                }
                else
                {
                    await Console.Error.WriteLineAsync($"paddock: no such sandbox: '{id}'");
                    code = ExitCodes.NotFound;
                }
            }
            return code;
        }));
        return command;
    }

    private static Command Timeout()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var seconds = new Argument<int>("seconds") { Description = "Seconds from now until the sandbox ends" };
        var command = new Command("timeout", "Set how long a sandbox lives from now") { id, seconds };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var value = parse.GetValue(seconds);
            if (value <= 0)
            {
                throw new CliException(ExitCodes.Usage, "seconds must be positive");
            }
            await Sandbox.SetTimeoutAsync(parse.GetValue(id)!, TimeSpan.FromSeconds(value), settings.Connection, ct);
            var info = await Sandbox.GetInfoAsync(parse.GetValue(id)!, settings.Connection, ct);
            Console.Out.Write($"{info.SandboxId} ends at {Time(info.EndAt)}\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    internal static string State(SandboxState state) => state == SandboxState.Paused ? "paused" : "running";

    internal static string Time(DateTimeOffset time) => time == default ? "-" : time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}

/// <summary>`paddock logs ID`.</summary>
internal static class LogsCommand
{
    public static Command Build()
    {
        var id = new Argument<string>("id") { Description = "The sandbox" };
        var limit = new Option<int?>("--limit") { Description = "At most this many entries (default: the daemon's)" };
        var command = new Command("logs", "Print a sandbox's log") { id, limit };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var logs = await Sandbox.GetLogsAsync(parse.GetValue(id)!, null, parse.GetValue(limit), settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(logs) + "\n");
                return ExitCodes.Ok;
            }
            foreach (var entry in logs)
            {
                var fields = entry.Fields.Count == 0 ? "" : "  " + string.Join(" ", entry.Fields.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key}={f.Value}"));
                Console.Out.Write($"{entry.Timestamp.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)}  {entry.Level,-5}  {entry.Message}{fields}\n");
            }
            return ExitCodes.Ok;
        }));
        return command;
    }
}
