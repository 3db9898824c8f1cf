using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Paddock.Cli.Output;
using Paddock.Client;
using CliSandboxes = Paddock.Cli.Sandboxes.SandboxCommands;

namespace Paddock.Cli.Templates;

/// <summary>`paddock template ls|build|rm`.</summary>
internal static class TemplateCommands
{
    public static Command Build()
    {
        var command = new Command("template", "Templates sandboxes start from");
        command.Subcommands.Add(List());
        command.Subcommands.Add(BuildFromDockerfile());
        command.Subcommands.Add(Delete());
        return command;
    }

    private static Command List()
    {
        var list = new Command("ls", "List templates");
        list.Aliases.Add("list");
        list.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var templates = await Client.Templates.ListAsync(settings.Connection, ct);
            if (parse.GetValue(CliApp.Json))
            {
                Console.Out.Write(CliJson.Write(templates) + "\n");
                return ExitCodes.Ok;
            }
            var table = new Table("TEMPLATE ID", "NAMES", "STATUS", "CPUS", "MEMORY", "DISK", "CREATED");
            foreach (var t in templates)
            {
                table.Add(t.TemplateId, string.Join(",", t.Names), t.BuildStatus ?? "-", t.CpuCount.ToString(CultureInfo.InvariantCulture), $"{t.MemoryMB} MiB", $"{t.DiskSizeMB} MiB", t.CreatedAt is { } c ? CliSandboxes.Time(c) : "-");
            }
            Console.Out.Write(table.Render());
            return ExitCodes.Ok;
        }));
        return list;
    }

    private static Command Delete()
    {
        var ids = new Argument<string[]>("template") { Description = "The templates to delete (ids or names)", Arity = ArgumentArity.OneOrMore };
        var command = new Command("rm", "Delete templates of your team (refused while sandboxes run from them)") { ids };
        command.Aliases.Add("delete");
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var code = ExitCodes.Ok;
            foreach (var id in parse.GetValue(ids)!)
            {
                if (await Client.Templates.DeleteAsync(id, settings.Connection, ct))
                {
                    Console.Out.Write($"deleted {id}\n");
                }
                else
                {
                    await Console.Error.WriteLineAsync($"paddock: no such template: '{id}'");
                    code = ExitCodes.NotFound;
                }
            }
            return code;
        }));
        return command;
    }

    /// <summary>
    /// `paddock template build -f Dockerfile --name N [--context DIR]`: the Dockerfile parsed here (Paddock.Client's
    /// Dockerfile), COPY sources packed and uploaded, then the build followed: its log goes to standard error as it
    /// comes, the template id to standard output at the end (for <c>id=$(paddock template build ...)</c>).
    /// </summary>
    private static Command BuildFromDockerfile()
    {
        var file = new Option<string>("--file", "-f") { Description = "The Dockerfile", Required = true };
        var name = new Option<string>("--name") { Description = "The template's name (a rebuild keeps its id)", Required = true };
        var context = new Option<string?>("--context") { Description = "The directory COPY sources are relative to (default: the current directory)" };
        var buildArgs = new Option<string[]>("--build-arg") { Description = "KEY=VALUE for an ARG (repeatable)", AllowMultipleArgumentsPerToken = false };
        var cpus = new Option<int?>("--cpu") { Description = "vCPUs of the template's sandboxes" };
        var memory = new Option<int?>("--memory-mb") { Description = "Memory of the template's sandboxes in MiB" };
        var force = new Option<bool>("--no-cache") { Description = "Rebuild every step, cached or not" };
        var command = new Command("build", "Build a template from a Dockerfile (FROM a template, an imported image or scratch; RUN, COPY, ENV, WORKDIR, USER, CMD, ARG)")
        {
            file, name, context, buildArgs, cpus, memory, force,
        };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var path = parse.GetValue(file)!;
            string text;
            try
            {
                text = await File.ReadAllTextAsync(path, ct);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CliException(ExitCodes.NotFound, $"cannot read the Dockerfile {path}: {ex.Message}");
            }
            var contextDir = Path.GetFullPath(parse.GetValue(context) ?? Directory.GetCurrentDirectory());
            if (!Directory.Exists(contextDir))
            {
                throw new CliException(ExitCodes.NotFound, $"the build context {contextDir} is not a directory");
            }
            TemplateBuilder template;
            try
            {
                template = Dockerfile.Parse(text, CliApp.Pairs(parse.GetValue(buildArgs), "--build-arg")).WithContext(contextDir);
            }
            catch (DockerfileException ex)
            {
                throw new CliException(ExitCodes.Usage, $"{path}: {ex.Message}");
            }
            foreach (var warning in template.Warnings)
            {
                await Console.Error.WriteLineAsync($"paddock: {path} {warning}");
            }
            var templateName = parse.GetValue(name)!;
            var clock = Stopwatch.StartNew();
            await Console.Error.WriteLineAsync($"paddock: building template '{templateName}' from {path} ({template.Steps.Count} steps, context {contextDir})");
            TemplateBuildResult result;
            try
            {
                result = await Client.Templates.BuildAsync(template, templateName, new TemplateBuildOptions
                {
                    CpuCount = parse.GetValue(cpus),
                    MemoryMB = parse.GetValue(memory),
                    Force = parse.GetValue(force),
                    OnLog = Print,
                }, settings.Connection, ct);
            }
            catch (TemplateBuildFailedException ex)
            {
                var log = string.Join("\n", ex.StepLog.Select(l => "  | " + l.Message));
                throw new CliException(ExitCodes.Failure, ex.Message + (log.Length > 0 ? $"\nthe failed step's log:\n{log}" : ""));
            }
            catch (UnauthorizedAccessException ex)
            {
                // A COPY source that leads out of the context (CopySources): the Dockerfile's fault, not a permission.
                throw new CliException(ExitCodes.Usage, ex.Message);
            }
            await Console.Error.WriteLineAsync($"paddock: built template '{result.Name}' ({result.TemplateId}) in {clock.Elapsed.TotalSeconds:0.0} s");
            Console.Out.Write(parse.GetValue(CliApp.Json) ? CliJson.Write(result) + "\n" : result.TemplateId + "\n");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>A log line as it comes: step headers and CACHED as the daemon words them ("[2/7] RUN ..."), a step's output indented.</summary>
    private static void Print(TemplateBuildLogEntry entry)
    {
        var header = entry.Message.StartsWith('[') || entry.Message.StartsWith("CACHED ", StringComparison.Ordinal);
        var line = entry.Step is null || header ? entry.Message : "    " + entry.Message;
        Console.Error.Write((entry.Level == "error" ? "ERROR " : "") + line + "\n");
    }
}
