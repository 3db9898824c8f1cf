using System.Text;
using System.Text.Json;

namespace Paddock.Interpreter.Contexts;

/// <summary>
/// Code that sets a call's environment variables in a kernel before its cell and puts them back after (E2B's
/// messaging.py does the same, but prepends the code to the cell; here it runs as separate silent executions, which
/// leave execution_count alone). Values are embedded as JSON string literals, valid in Python and JavaScript; for
/// bash as single-quoted words.
/// </summary>
internal static class EnvSnippets
{
    public static string Set(string language, IReadOnlyDictionary<string, string> vars) => language switch
    {
        "python" => $"__import__('os').environ.update({Json(vars)})",
        "javascript" => $"Object.assign(process.env, {Json(vars)})",
        "bash" => string.Join('\n', vars.Select(v => $"export {v.Key}={BashWord(v.Value)}")),
        _ => "",
    };

    /// <summary>Each variable back to its value in the sandbox's environment (<paramref name="original"/>), or removed.</summary>
    public static string Reset(string language, IEnumerable<string> names, IReadOnlyDictionary<string, string> original)
    {
        var restore = names.Where(original.ContainsKey).ToDictionary(n => n, n => original[n], StringComparer.Ordinal);
        var remove = names.Where(n => !original.ContainsKey(n)).ToList();
        return language switch
        {
            "python" => $"__import__('os').environ.update({Json(restore)})\nfor __paddock_k in {JsonList(remove)}: __import__('os').environ.pop(__paddock_k, None)\ndel __paddock_k",
            "javascript" => $"Object.assign(process.env, {Json(restore)}); for (const k of {JsonList(remove)}) delete process.env[k]",
            "bash" => string.Join('\n', restore.Select(v => $"export {v.Key}={BashWord(v.Value)}").Concat(remove.Select(n => $"unset {n}"))),
            _ => "",
        };
    }

    /// <summary>Whether <paramref name="name"/> can be an environment variable name in every kernel (bash's rule).</summary>
    public static bool IsValidName(string name) =>
        name.Length > 0 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    private static string Json(IReadOnlyDictionary<string, string> vars)
    {
        var sb = new StringBuilder("{");
        foreach (var (k, v) in vars)
        {
            sb.Append(sb.Length > 1 ? ", " : "").Append(Quote(k)).Append(": ").Append(Quote(v));
        }
        return sb.Append('}').ToString();
    }

    private static string JsonList(IEnumerable<string> items) => "[" + string.Join(", ", items.Select(Quote)) + "]";

    // JSON string literals escape quotes, backslashes and control characters; JavaScriptEncoder's default also
    // escapes non-ASCII as \uXXXX, which both Python and JavaScript read back as the same characters.
    private static string Quote(string s) => JsonSerializer.Serialize(s, InterpreterJson.Default.String);

    private static string BashWord(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
