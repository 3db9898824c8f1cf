using System.CommandLine;
using Paddock.Cli.Exec;
using Paddock.Cli.Native;
using Paddock.Client;

namespace Paddock.Cli.Code;

/// <summary>
/// `paddock run-code ID -- CODE` (or `--file F`): runs a cell in a code-interpreter sandbox, streams its stdout and
/// stderr, prints text results, saves PNG/JPEG/SVG results to --out DIR, and exits 1 when the cell raised.
/// </summary>
internal static class RunCodeCommand
{
    public static Command Build()
    {
        var id = new Argument<string>("id") { Description = "The sandbox (made from the code-interpreter template)" };
        var code = new Argument<string[]>("code") { Description = "The code (after --); several arguments are joined by newlines", Arity = ArgumentArity.ZeroOrMore };
        var file = new Option<string?>("--file", "-f") { Description = "Read the code from this file ('-': stdin)" };
        var language = new Option<string?>("--language", "-l") { Description = "python (default), javascript or bash" };
        var context = new Option<string?>("--context", "-c") { Description = "Run in this context id instead of the language's default one" };
        var outDir = new Option<string?>("--out", "-o") { Description = "Save image results (png, jpeg, svg) to this directory" };
        var env = new Option<string[]>("--env", "-e") { Description = "KEY=VALUE for this cell only (repeatable)" };
        var timeout = new Option<int>("--timeout") { Description = "Seconds the cell may run (it is interrupted after)", DefaultValueFactory = _ => 60 };
        var command = new Command("run-code", "Run a cell of code in a code-interpreter sandbox; prints its output and results")
        {
            id, code, file, language, context, outDir, env, timeout,
        };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var source = await ReadCodeAsync(parse.GetValue(code) ?? [], parse.GetValue(file), ct);
            if (parse.GetValue(timeout) <= 0)
            {
                throw new CliException(ExitCodes.Usage, "--timeout must be positive");
            }
            if (parse.GetValue(language) is not null && parse.GetValue(context) is not null)
            {
                throw new CliException(ExitCodes.Usage, "give --language or --context, not both");
            }
            await using var sandbox = await CliSandbox.ConnectAsync(parse.GetValue(id)!, settings, ct);
            using var stdout = StdStreams.Output();
            using var stderr = StdStreams.Error();
            var callbacks = new ExecutionCallbacks
            {
                OnStdout = text => Write(stdout, text),
                OnStderr = text => Write(stderr, text),
            };
            var contextId = parse.GetValue(context);
            var execution = await sandbox.Code.RunAsync(source, parse.GetValue(language),
                contextId is null ? null : new CodeContext(contextId, "", ""), callbacks,
                CliApp.Pairs(parse.GetValue(env), "--env"), TimeSpan.FromSeconds(parse.GetValue(timeout)), ct);
            var saved = parse.GetValue(outDir) is { } dir ? SaveImages(execution, dir) : [];
            foreach (var result in execution.Results)
            {
                if (result.Text is { } text && (result.IsMainResult || (result.Png is null && result.Jpeg is null && result.Svg is null)))
                {
                    Write(stdout, text + "\n");
                }
            }
            foreach (var path in saved)
            {
                Write(stderr, $"paddock: saved {path}\n");
            }
            if (execution.Error is { } error)
            {
                Write(stderr, (error.Traceback.Length > 0 ? error.Traceback : $"{error.Name}: {error.Value}") + "\n");
                return 1;
            }
            return 0;
        }));
        return command;
    }

    private static async Task<string> ReadCodeAsync(string[] parts, string? file, CancellationToken cancellationToken)
    {
        if (file is not null && parts.Length > 0)
        {
            throw new CliException(ExitCodes.Usage, "give the code after -- or with --file, not both");
        }
        if (file == "-")
        {
            return await Console.In.ReadToEndAsync(cancellationToken);
        }
        if (file is not null)
        {
            return File.Exists(file) ? await File.ReadAllTextAsync(file, cancellationToken) : throw new CliException(ExitCodes.Usage, $"no such file: {file}");
        }
        return parts.Length > 0 ? string.Join('\n', parts) : throw new CliException(ExitCodes.Usage, "no code: give it after -- or with --file");
    }

    /// <summary>Writes each image result as result-N.png/.jpeg/.svg (N counts from 1 in the cell's order).</summary>
    private static List<string> SaveImages(Execution execution, string dir)
    {
        Directory.CreateDirectory(dir);
        var saved = new List<string>();
        for (var i = 0; i < execution.Results.Count; i++)
        {
            var r = execution.Results[i];
            void Save(string extension, byte[] bytes)
            {
                var path = Path.Combine(dir, $"result-{i + 1}.{extension}");
                File.WriteAllBytes(path, bytes);
                saved.Add(path);
            }
            if (r.Png is { } png)
            {
                Save("png", Convert.FromBase64String(png));
            }
            if (r.Jpeg is { } jpeg)
            {
                Save("jpeg", Convert.FromBase64String(jpeg));
            }
            if (r.Svg is { } svg)
            {
                Save("svg", System.Text.Encoding.UTF8.GetBytes(svg));
            }
        }
        return saved;
    }

    private static void Write(Stream stream, string text)
    {
        var bytes = System.Text.Encoding.UTF8.GetBytes(text);
        stream.Write(bytes);
        stream.Flush();
    }
}
