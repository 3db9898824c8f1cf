using System.CommandLine;
using System.Globalization;
using Paddock.Cli.Output;
using CliSandboxes = Paddock.Cli.Sandboxes.SandboxCommands;
using Paddock.Client;

namespace Paddock.Cli.Teams;

/// <summary>`paddock keys create|ls|revoke`: the API keys of the key's own team, or of any team for an admin key (--team).</summary>
internal static class KeyCommands
{
    public static Command Build()
    {
        var command = new Command("keys", "Create, list and revoke API keys");
        command.Subcommands.Add(Create());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Revoke());
        return command;
    }

    private static Option<string?> TeamOption() => new("--team") { Description = "Another team's id (needs a key of an admin team)" };

    private static Command Create()
    {
        var name = new Option<string>("--name") { Description = "A name for the key", Required = true };
        var team = TeamOption();
        var command = new Command("create", "Create a key and print it: it is shown this once") { name, team };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var text = parse.GetValue(name);
            if (string.IsNullOrWhiteSpace(text))
            {
                throw new CliException(ExitCodes.Usage, "--name must not be empty");
            }
            var created = await ApiKeys.CreateAsync(text, parse.GetValue(team), settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(created) + "\n");
                return ExitCodes.Ok;
            }
            // The key alone on stdout, for `key=$(paddock keys create ...)`; the rest is for the person.
            Console.Out.Write(created.Key + "\n");
            await Console.Error.WriteLineAsync($"paddock: created key {created.Id} ('{created.Name}'); it is shown only now, keep it");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command List()
    {
        var team = TeamOption();
        var command = new Command("ls", "List the unrevoked keys") { team };
        command.Aliases.Add("list");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var keys = await ApiKeys.ListAsync(parse.GetValue(team), settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(keys) + "\n");
                return ExitCodes.Ok;
            }
            var table = new Table("KEY ID", "NAME", "KEY", "CREATED", "LAST USED");
            foreach (var k in keys)
            {
                table.Add(k.Id, k.Name, k.Mask, CliSandboxes.Time(k.CreatedAt), k.LastUsed is { } used ? CliSandboxes.Time(used) : "-");
            }
            Console.Out.Write(table.Render());
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Revoke()
    {
        var ids = new Argument<string[]>("id") { Description = "The keys to revoke (their ids, from 'paddock keys ls')", Arity = ArgumentArity.OneOrMore };
        var team = TeamOption();
        var command = new Command("revoke", "Revoke keys: they are refused from the next request on") { ids, team };
        command.Aliases.Add("rm");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var code = ExitCodes.Ok;
            foreach (var id in parse.GetValue(ids)!)
            {
                try
                {
                    await ApiKeys.RevokeAsync(id, parse.GetValue(team), settings.Connection, ct);
                    Console.Out.Write($"revoked {id}\n");
                }
                catch (NotFoundException)
                {
                    await Console.Error.WriteLineAsync($"paddock: no such key: '{id}'");
                    code = ExitCodes.NotFound;
                }
            }
            return code;
        }));
        return command;
    }
}

/// <summary>`paddock teams create|ls|set-limits` (creating and changing limits needs a key of an admin team).</summary>
internal static class TeamCommands
{
    public static Command Build()
    {
        var command = new Command("teams", "Teams own keys and sandboxes and have limits");
        command.Subcommands.Add(Create());
        command.Subcommands.Add(List());
        command.Subcommands.Add(SetLimits());
        return command;
    }

    private static (Option<string?> Sandboxes, Option<string?> Cpus, Option<string?> Memory, Option<string?> Isolation, Option<string?> Paused) LimitOptions() => (
        new Option<string?>("--max-sandboxes") { Description = "Sandboxes at once (a number, or 'none')" },
        new Option<string?>("--max-cpus") { Description = "vCPUs of all its sandboxes together (a number, or 'none')" },
        new Option<string?>("--max-memory-mb") { Description = "MiB of memory of all its sandboxes together (a number, or 'none')" },
        new Option<string?>("--isolation") { Description = "The one isolation tier its sandboxes may run on (runc, gvisor), or 'any'" },
        new Option<string?>("--max-paused") { Description = "Paused sandboxes it may keep (a number, or 'none' for the daemon's --max-paused-per-team)" });

    private static Command Create()
    {
        var name = new Argument<string>("name") { Description = "The team's name: letters, digits, '-', '_', '.'" };
        var (sandboxes, cpus, memory, isolation, paused) = LimitOptions();
        var command = new Command("create", "Create a team and print its id") { name, sandboxes, cpus, memory, isolation, paused };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var limits = new TeamLimits(
                Limit(parse.GetValue(sandboxes), "--max-sandboxes", null),
                Limit(parse.GetValue(cpus), "--max-cpus", null),
                Limit(parse.GetValue(memory), "--max-memory-mb", null),
                Tier(parse.GetValue(isolation), null),
                Limit(parse.GetValue(paused), "--max-paused", null));
            var team = await Client.Teams.CreateAsync(parse.GetValue(name)!, limits, settings.Connection, ct);
            Console.Out.Write(parse.GetValue(CliApp.Json) ? CliJson.Write(team) + "\n" : team.TeamId + "\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command List()
    {
        var command = new Command("ls", "List teams: an admin key sees all, any other key its own");
        command.Aliases.Add("list");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var teams = await Client.Teams.ListAsync(settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(teams) + "\n");
                return ExitCodes.Ok;
            }
            var table = new Table("TEAM ID", "NAME", "ADMIN", "SANDBOXES", "CPUS", "MEMORY MIB", "PAUSED");
            foreach (var t in teams)
            {
                table.Add(t.TeamId, t.IsCallersTeam ? t.Name + " *" : t.Name, t.IsAdmin ? "yes" : "no",
                    Of(t.Usage.Sandboxes, t.Limits.MaxSandboxes), Of(t.Usage.Cpus, t.Limits.MaxCpus), Of(t.Usage.MemoryMB, t.Limits.MaxMemoryMB),
                    Of(t.Usage.PausedSandboxes, t.Limits.MaxPausedSandboxes));
            }
            Console.Out.Write(table.Render());
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command SetLimits()
    {
        var id = new Argument<string>("team") { Description = "The team's id" };
        var (sandboxes, cpus, memory, isolation, paused) = LimitOptions();
        var command = new Command("set-limits", "Change a team's limits; limits not named stay as they are") { id, sandboxes, cpus, memory, isolation, paused };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var (s, c, m, i, p) = (parse.GetValue(sandboxes), parse.GetValue(cpus), parse.GetValue(memory), parse.GetValue(isolation), parse.GetValue(paused));
            if (s is null && c is null && m is null && i is null && p is null)
            {
                throw new CliException(ExitCodes.Usage, "name at least one limit: --max-sandboxes, --max-cpus, --max-memory-mb, --isolation or --max-paused");
            }
            var teamId = parse.GetValue(id)!;
            var current = (await Client.Teams.ListAsync(settings.Connection, ct)).FirstOrDefault(t => t.TeamId == teamId)
                ?? throw new CliException(ExitCodes.NotFound, $"no such team: '{teamId}' (or this key may not see it)");
            var limits = new TeamLimits(
                Limit(s, "--max-sandboxes", current.Limits.MaxSandboxes),
                Limit(c, "--max-cpus", current.Limits.MaxCpus),
                Limit(m, "--max-memory-mb", current.Limits.MaxMemoryMB),
                Tier(i, current.Limits.Isolation),
                Limit(p, "--max-paused", current.Limits.MaxPausedSandboxes));
            var team = await Client.Teams.SetLimitsAsync(teamId, limits, settings.Connection, ct);
            Console.Out.Write(parse.GetValue(CliApp.Json)
                ? CliJson.Write(team) + "\n"
                : $"{team.TeamId}: sandboxes {Show(team.Limits.MaxSandboxes)}, cpus {Show(team.Limits.MaxCpus)}, memory {Show(team.Limits.MaxMemoryMB)} MiB, isolation {team.Limits.Isolation ?? "any"}, paused {team.Limits.MaxPausedSandboxes?.ToString(CultureInfo.InvariantCulture) ?? "as the daemon's default"}\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>Absent keeps <paramref name="current"/>; "none" removes the limit; else a non-negative number.</summary>
    private static int? Limit(string? text, string option, int? current) => text switch
    {
        null => current,
        "none" => null,
        _ when int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) => n,
        _ => throw new CliException(ExitCodes.Usage, $"{option} takes a non-negative number or 'none', not '{text}'"),
    };

    /// <summary>Absent keeps <paramref name="current"/>; "any" lifts the binding; else a tier's name (the daemon checks it).</summary>
    private static string? Tier(string? text, string? current) => text switch
    {
        null => current,
        "any" => null,
        _ => text,
    };

    private static string Of(long used, int? limit) => limit is { } l ? $"{used}/{l}" : $"{used}/-";

    private static string Show(int? limit) => limit?.ToString(CultureInfo.InvariantCulture) ?? "unlimited";
}
