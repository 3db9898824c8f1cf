using System.Diagnostics;
using Paddock.Interpreter.Contexts;

namespace Paddock.Interpreter.Tests;

/// <summary>The snippets run by the real interpreters they are written for, with values that break naive quoting.</summary>
public sealed class EnvSnippetsTests
{
    private static readonly Dictionary<string, string> Awkward = new()
    {
        ["PLAIN"] = "value",
        ["QUOTES"] = "it's \"quoted\" \\ $HOME `x`",
        ["LINES"] = "one\ntwo",
        ["UNICODE"] = "héllo ✓",
        ["KEPT"] = "changed",
    };

    private static readonly Dictionary<string, string> Original = new() { ["KEPT"] = "original" };

    private static async Task<string> RunAsync(string program, string[] args, string stdin)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        start.Environment["KEPT"] = "original";
        using var process = Process.Start(start)!;
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var output = await process.StandardOutput.ReadToEndAsync(timeout.Token);
        var error = await process.StandardError.ReadToEndAsync(timeout.Token);
        await process.WaitForExitAsync(timeout.Token);
        Assert.True(process.ExitCode == 0, $"{program} failed: {error}");
        return output;
    }

    // Debian's python3 (the sandbox's), not a pyenv shim that may stand first in PATH on a developer's machine.
    private static string Python => File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";

    [Fact]
    public async Task Python_sets_every_value_exactly_and_resets_to_the_original_or_nothing()
    {
        var names = string.Join(", ", Awkward.Keys.Select(k => $"'{k}'"));
        var script = EnvSnippets.Set("python", Awkward) + "\n"
            + $"import os, json\nprint(json.dumps({{k: os.environ.get(k) for k in [{names}]}}))\n"
            + EnvSnippets.Reset("python", Awkward.Keys, Original) + "\n"
            + $"print(json.dumps({{k: os.environ.get(k) for k in [{names}]}}))\n";
        var lines = (await RunAsync(Python, ["-"], script)).Trim().Split('\n');

        var set = System.Text.Json.JsonSerializer.Deserialize(lines[0], TestJson.Default.DictionaryStringString)!;
        Assert.All(Awkward, pair => Assert.Equal(pair.Value, set[pair.Key]));
        var reset = System.Text.Json.JsonSerializer.Deserialize(lines[1], TestJson.Default.DictionaryStringString)!;
        Assert.Equal("original", reset["KEPT"]);
        Assert.All(Awkward.Keys.Where(k => k != "KEPT"), k => Assert.Null(reset[k]));
    }

    [Fact]
    public async Task Bash_sets_every_value_exactly_and_resets_to_the_original_or_nothing()
    {
        var print = string.Join("\n", Awkward.Keys.Select(k => $"printf '%s=[%s]\\n' {k} \"${{{k}-unset}}\""));
        var script = EnvSnippets.Set("bash", Awkward) + "\n" + print + "\necho ---\n" + EnvSnippets.Reset("bash", Awkward.Keys, Original) + "\n" + print + "\n";
        var output = await RunAsync("bash", ["--noprofile", "--norc"], script);
        var (set, reset) = (output.Split("---\n")[0], output.Split("---\n")[1]);

        foreach (var (k, v) in Awkward)
        {
            Assert.Contains($"{k}=[{v}]\n", set);
        }
        Assert.Contains("KEPT=[original]\n", reset);
        Assert.Contains("PLAIN=[unset]\n", reset);
        Assert.Contains("QUOTES=[unset]\n", reset);
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string?>))]
internal sealed partial class TestJson : System.Text.Json.Serialization.JsonSerializerContext;
