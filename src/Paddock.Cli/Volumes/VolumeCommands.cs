using System.CommandLine;
using System.Globalization;
using Paddock.Cli.Output;
using Paddock.Client;

namespace Paddock.Cli.Volumes;

/// <summary>`paddock volume create|ls|rm`: the key's team's volumes (mounted with `paddock sandbox create --volume`).</summary>
internal static class VolumeCommands
{
    public static Command Build()
    {
        var command = new Command("volume", "Create, list and remove volumes: disks that outlive the sandboxes mounting them");
        command.Aliases.Add("volumes");
        command.Subcommands.Add(Create());
        command.Subcommands.Add(List());
        command.Subcommands.Add(Remove());
        return command;
    }

    private static Command Create()
    {
        var name = new Argument<string>("name") { Description = "The volume's name: letters, digits, '_', '-'" };
        var size = new Option<int?>("--size-mb") { Description = "Its size limit in MiB (default: the daemon's --volume-size-mb)" };
        var command = new Command("create", "Create a volume and print its id") { name, size };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var created = await Client.Volumes.CreateAsync(parse.GetValue(name)!, parse.GetValue(size), settings.Connection, ct);
            Console.Out.Write(parse.GetValue(CliApp.Json) ? CliJson.Write(created) + "\n" : created.VolumeId + "\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command List()
    {
        var command = new Command("ls", "List the team's volumes");
        command.Aliases.Add("list");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var volumes = await Client.Volumes.ListAsync(settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(volumes) + "\n");
                return ExitCodes.Ok;
            }
            var table = new Table("VOLUME ID", "NAME", "SIZE");
            foreach (var v in volumes)
            {
                table.Add(v.VolumeId, v.Name, v.SizeMB is { } mb ? mb.ToString(CultureInfo.InvariantCulture) + " MiB" : "-");
            }
            Console.Out.Write(table.Render());
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Remove()
    {
        var ids = new Argument<string[]>("id") { Description = "The volumes to remove (their ids, from 'paddock volume ls')", Arity = ArgumentArity.OneOrMore };
        var command = new Command("rm", "Remove volumes and their files (refused while a sandbox has one mounted)") { ids };
        command.Aliases.Add("remove");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var code = ExitCodes.Ok;
            foreach (var id in parse.GetValue(ids)!)
            {
                try
                {
                    await Client.Volumes.DeleteAsync(id, settings.Connection, ct);
                    Console.Out.Write($"removed {id}\n");
                }
                catch (NotFoundException)
                {
                    await Console.Error.WriteLineAsync($"paddock: no such volume: '{id}'");
                    code = ExitCodes.NotFound;
                }
            }
            return code;
        }));
        return command;
    }
}
