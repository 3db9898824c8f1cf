using System.Text;
using System.Text.Json;
using Paddock.Client.Builds;

namespace Paddock.Client;

/// <summary>A Dockerfile this SDK cannot turn into build steps: what and where.</summary>
public sealed class DockerfileException : FormatException
{
    /// <summary>Creates the error for line <paramref name="line"/> (1-based; 0 for the file as a whole).</summary>
    public DockerfileException(int line, string message)
        : base(line > 0 ? $"Dockerfile line {line}: {message}" : $"Dockerfile: {message}")
    {
        Line = line;
    }

    /// <summary>The line (1-based) of the instruction at fault; 0 when it is about the file as a whole.</summary>
    public int Line { get; }
}

/// <summary>
/// Turns a Dockerfile into a <see cref="TemplateBuilder"/>: its one FROM becomes the base (<c>scratch</c>, E2B's
/// <c>e2bdev/base</c>, or a template of the host by name: images imported into the host are templates too), and
/// RUN, COPY, ENV, WORKDIR and USER become build steps; CMD and ENTRYPOINT become the start command. ARG values
/// (their defaults, or the build's <c>buildArgs</c>) are substituted, as are ENV values in the instructions Docker
/// expands them in. Comments, line continuations and exec (JSON) forms are understood.
/// </summary>
/// <remarks>
/// <para>Differences from Docker, each deliberate:</para>
/// <list type="bullet">
/// <item>RUN and COPY run as root until a USER, as in Docker, but a Dockerfile without USER keeps the base template's
/// default user for its sandboxes (<c>user</c> in <c>base</c>), as E2B's SDK does.</item>
/// <item>An ARG is substituted into RUN commands as text (Docker hands it to the command as an environment variable);
/// it is not part of the template's environment.</item>
/// <item>A RUN before any WORKDIR runs in the base template's working directory, not in <c>/</c>.</item>
/// <item>EXPOSE, LABEL and MAINTAINER are ignored (listed in <see cref="TemplateBuilder.Warnings"/>).</item>
/// </list>
/// <para>Refused with the line: a second FROM (multi-stage builds), <c>COPY --from</c>, ADD of URLs or archives,
/// heredocs, HEALTHCHECK, ONBUILD, SHELL, STOPSIGNAL, VOLUME, and unknown instructions or flags.</para>
/// </remarks>
public static class Dockerfile
{
    private static readonly string[] ArchiveSuffixes = [".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst"];

    /// <summary>Parses <paramref name="text"/>; throws <see cref="DockerfileException"/> with the line for what it cannot take.</summary>
    public static TemplateBuilder Parse(string text, IReadOnlyDictionary<string, string>? buildArgs = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new Parser(buildArgs ?? new Dictionary<string, string>()).Run(text);
    }

    /// <summary>An instruction after continuations are joined: where it starts, its keyword and the rest.</summary>
    internal readonly record struct Instruction(int Line, string Keyword, string Arguments);

    /// <summary>Splits the text into instructions: comments dropped, lines ending in a backslash joined to the next.</summary>
    internal static List<Instruction> Instructions(string text)
    {
        var result = new List<Instruction>();
        var lines = text.Replace("\r\n", "\n", StringComparison.Ordinal).Split('\n');
        var pending = new StringBuilder();
        var start = 0;
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i];
            var trimmed = line.TrimStart();
            // Comment lines go, also between the lines of a continued instruction (as Docker drops them there).
            if (trimmed.StartsWith('#'))
            {
                continue;
            }
            if (pending.Length == 0)
            {
                if (trimmed.Length == 0)
                {
                    continue;
                }
                start = i + 1;
            }
            var end = line.TrimEnd();
            if (end.EndsWith('\\'))
            {
                pending.Append(end, 0, end.Length - 1);
                continue;
            }
            pending.Append(line);
            Add(pending.ToString(), start);
            pending.Clear();
        }
        if (pending.Length > 0)
        {
            Add(pending.ToString(), start);
        }
        return result;

        void Add(string joined, int at)
        {
            var body = joined.Trim();
            if (body.Length == 0)
            {
                return;
            }
            var space = body.IndexOfAny([' ', '\t']);
            var keyword = (space < 0 ? body : body[..space]).ToUpperInvariant();
            result.Add(new Instruction(at, keyword, space < 0 ? "" : body[(space + 1)..].Trim()));
        }
    }

    /// <summary>
    /// Splits <paramref name="text"/> into words at unquoted whitespace, removing quotes and backslash escapes and
    /// expanding <c>$NAME</c>, <c>${NAME}</c>, <c>${NAME:-default}</c> and <c>${NAME:+alternative}</c> outside single
    /// quotes, as Docker's word processing does. <paramref name="lookup"/> null: no expansion.
    /// </summary>
    internal static List<string> Words(string text, Func<string, string?>? lookup, int line)
    {
        var words = new List<string>();
        var word = new StringBuilder();
        var inWord = false;
        var i = 0;
        while (i < text.Length)
        {
            var c = text[i];
            if (char.IsWhiteSpace(c))
            {
                if (inWord)
                {
                    words.Add(word.ToString());
                    word.Clear();
                    inWord = false;
                }
                i++;
                continue;
            }
            inWord = true;
            switch (c)
            {
                case '\'':
                    var close = text.IndexOf('\'', i + 1);
                    if (close < 0)
                    {
                        throw new DockerfileException(line, "a single quote is not closed");
                    }
                    word.Append(text, i + 1, close - i - 1);
                    i = close + 1;
                    break;
                case '"':
                    i++;
                    while (true)
                    {
                        if (i >= text.Length)
                        {
                            throw new DockerfileException(line, "a double quote is not closed");
                        }
                        if (text[i] == '"')
                        {
                            i++;
                            break;
                        }
                        if (text[i] == '\\' && i + 1 < text.Length && text[i + 1] is '"' or '\\' or '$')
                        {
                            word.Append(text[i + 1]);
                            i += 2;
                        }
                        else if (text[i] == '$' && lookup is not null)
                        {
                            i = Expand(text, i, lookup, word, line);
                        }
                        else
                        {
                            word.Append(text[i++]);
                        }
                    }
                    break;
                case '\\' when i + 1 < text.Length:
                    word.Append(text[i + 1]);
                    i += 2;
                    break;
                case '$' when lookup is not null:
                    i = Expand(text, i, lookup, word, line);
                    break;
                default:
                    word.Append(c);
                    i++;
                    break;
            }
        }
        if (inWord)
        {
            words.Add(word.ToString());
        }
        return words;
    }

    /// <summary>Expands the variable reference at <paramref name="at"/> (a '$') into <paramref name="into"/>; returns where the text goes on.</summary>
    private static int Expand(string text, int at, Func<string, string?> lookup, StringBuilder into, int line)
    {
        var i = at + 1;
        if (i < text.Length && text[i] == '{')
        {
            var close = text.IndexOf('}', i);
            if (close < 0)
            {
                throw new DockerfileException(line, "a '${' has no closing '}'");
            }
            var inner = text[(i + 1)..close];
            var colon = inner.IndexOf(':', StringComparison.Ordinal);
            var name = colon < 0 ? inner : inner[..colon];
            if (!IsName(name))
            {
                throw new DockerfileException(line, $"'${{{inner}}}' is not a variable reference this parser understands (${{NAME}}, ${{NAME:-default}}, ${{NAME:+alternative}})");
            }
            var value = lookup(name);
            if (colon < 0)
            {
                into.Append(value);
            }
            else if (inner.Length > colon + 1 && inner[colon + 1] is '-' or '+')
            {
                var word = inner[(colon + 2)..];
                var set = !string.IsNullOrEmpty(value);
                into.Append(inner[colon + 1] == '-' ? (set ? value : word) : (set ? word : ""));
            }
            else
            {
                throw new DockerfileException(line, $"'${{{inner}}}': only the ':-' and ':+' modifiers are supported");
            }
            return close + 1;
        }
        var nameEnd = i;
        while (nameEnd < text.Length && (char.IsAsciiLetterOrDigit(text[nameEnd]) || text[nameEnd] == '_'))
        {
            nameEnd++;
        }
        if (nameEnd == i)
        {
            into.Append('$');
            return i;
        }
        into.Append(lookup(text[i..nameEnd]));
        return nameEnd;
    }

    private static bool IsName(string name) =>
        name.Length > 0 && (char.IsAsciiLetter(name[0]) || name[0] == '_') && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    /// <summary>The arguments as a JSON array of strings (exec form), or null when they are not one (shell form).</summary>
    internal static List<string>? ExecForm(string arguments)
    {
        if (!arguments.StartsWith('['))
        {
            return null;
        }
        try
        {
            using var doc = JsonDocument.Parse(arguments);
            if (doc.RootElement.ValueKind != JsonValueKind.Array || doc.RootElement.EnumerateArray().Any(e => e.ValueKind != JsonValueKind.String))
            {
                return null;
            }
            return doc.RootElement.EnumerateArray().Select(e => e.GetString()!).ToList();
        }
        catch (JsonException)
        {
            // Docker too runs a '[' that is not a JSON array of strings as a shell command.
            return null;
        }
    }

    /// <summary>One shell command line that runs exactly <paramref name="argv"/>.</summary>
    internal static string ShellJoin(IEnumerable<string> argv) => string.Join(' ', argv.Select(ShellQuote));

    private static string ShellQuote(string arg) =>
        arg.Length > 0 && arg.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '_' or '-' or '=' or ':' or ',' or '+' or '@' or '%')
            ? arg
            : "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private sealed class Parser(IReadOnlyDictionary<string, string> buildArgs)
    {
        private readonly Dictionary<string, string> _args = new(StringComparer.Ordinal);
        private readonly Dictionary<string, string> _env = new(StringComparer.Ordinal);
        private readonly List<string> _warnings = [];
        private TemplateBuilder? _template;
        private string? _workdir;
        private string? _user;
        private (List<string>? Exec, string? Shell)? _cmd;
        private (List<string>? Exec, string? Shell)? _entrypoint;

        public TemplateBuilder Run(string text)
        {
            foreach (var instruction in Instructions(text))
            {
                Apply(instruction);
            }
            var template = _template ?? throw new DockerfileException(0, "there is no FROM instruction");
            if (StartCommand() is { } start)
            {
                template.SetStartCommand(start);
            }
            template.Warnings = _warnings;
            return template;
        }

        private string? Lookup(string name) => _env.TryGetValue(name, out var v) ? v : _args.TryGetValue(name, out var a) ? a : null;

        // ARGs only: RUN keeps every other '$' for its shell.
        private string? ArgLookup(string name) => _args.GetValueOrDefault(name);

        private void Apply(Instruction ins)
        {
            var (line, keyword, rest) = ins;
            if (_template is null && keyword is not ("FROM" or "ARG"))
            {
                throw new DockerfileException(line, $"{keyword} before FROM: a Dockerfile starts with FROM (only ARG may come before it)");
            }
            if (rest.StartsWith("<<", StringComparison.Ordinal) || (keyword is "RUN" or "COPY" && rest.Contains(" <<", StringComparison.Ordinal) && HasHeredoc(rest)))
            {
                throw new DockerfileException(line, $"heredocs ({keyword} <<EOF) are not supported: write the command on one line, or COPY a script");
            }
            switch (keyword)
            {
                case "FROM":
                    From(line, rest);
                    break;
                case "ARG":
                    Arg(line, rest);
                    break;
                case "RUN":
                    Require(line, keyword, rest);
                    RejectFlags(line, keyword, rest);
                    var run = ExecForm(rest) is { } exec
                        ? ShellJoin(exec.Select(a => Substitute(a, line, ArgLookup)))
                        : Substitute(rest, line, ArgLookup);
                    _template!.Add(TemplateStepKind.Run, [run, _user ?? "root"], line);
                    break;
                case "COPY":
                case "ADD":
                    Copy(line, keyword, rest);
                    break;
                case "ENV":
                    Env(line, rest);
                    break;
                case "WORKDIR":
                    Require(line, keyword, rest);
                    var dir = Single(line, keyword, rest);
                    _workdir = dir.StartsWith('/') ? dir : Combine(_workdir ?? "/", dir);
                    _template!.Add(TemplateStepKind.Workdir, [_workdir], line);
                    break;
                case "USER":
                    Require(line, keyword, rest);
                    var user = Single(line, keyword, rest);
                    if (user.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
                    {
                        _warnings.Add($"line {line}: USER {user}: the group is ignored; commands run with {user[..colon]}'s own groups");
                        user = user[..colon];
                    }
                    _user = user;
                    _template!.Add(TemplateStepKind.User, [user], line);
                    break;
                case "CMD":
                    Require(line, keyword, rest);
                    _cmd = ExecForm(rest) is { } cmd ? (cmd, null) : (null, rest);
                    break;
                case "ENTRYPOINT":
                    Require(line, keyword, rest);
                    _entrypoint = ExecForm(rest) is { } entry ? (entry, null) : (null, rest);
                    break;
                case "EXPOSE":
                case "LABEL":
                case "MAINTAINER":
                    _warnings.Add($"line {line}: {keyword} is ignored (it does not change the template)");
                    break;
                case "HEALTHCHECK":
                case "ONBUILD":
                case "SHELL":
                case "STOPSIGNAL":
                case "VOLUME":
                    throw new DockerfileException(line, $"{keyword} is not supported (supported: FROM, ARG, RUN, COPY, ADD of local files, ENV, WORKDIR, USER, CMD, ENTRYPOINT)");
                default:
                    throw new DockerfileException(line, $"unknown instruction '{keyword}'");
            }
        }

        private static bool HasHeredoc(string rest) =>
            Words(rest, null, 0).Any(w => w.StartsWith("<<", StringComparison.Ordinal) && w.Length > 2 && (char.IsAsciiLetter(w[2]) || w[2] is '-' or '\'' or '"'));

        private static void Require(int line, string keyword, string rest)
        {
            if (rest.Length == 0)
            {
                throw new DockerfileException(line, $"{keyword} needs an argument");
            }
        }

        private static void RejectFlags(int line, string keyword, string rest)
        {
            if (rest.StartsWith("--", StringComparison.Ordinal))
            {
                throw new DockerfileException(line, $"{keyword} flags ({rest.Split(' ')[0]}) are not supported");
            }
        }

        private string Single(int line, string keyword, string rest)
        {
            var words = Words(rest, Lookup, line);
            return words.Count == 1 && words[0].Length > 0 ? words[0] : throw new DockerfileException(line, $"{keyword} takes exactly one value, not '{rest}'");
        }

        private static string Substitute(string text, int line, Func<string, string?> lookup, bool quotes = true)
        {
            // Expansion only: quotes and backslashes stay for the shell that runs the command.
            var result = new StringBuilder();
            var i = 0;
            var inSingle = false;
            var inDouble = false;
            while (i < text.Length)
            {
                var c = text[i];
                if (c == '\'' && quotes && !inDouble)
                {
                    inSingle = !inSingle;
                }
                else if (c == '"' && quotes && !inSingle)
                {
                    inDouble = !inDouble;
                }
                if (c == '\\' && quotes && i + 1 < text.Length && !inSingle)
                {
                    result.Append(c).Append(text[i + 1]);
                    i += 2;
                    continue;
                }
                if (c == '$' && !inSingle && i + 1 < text.Length && Reference(text, i + 1) is { } name && lookup(name) is not null)
                {
                    i = Expand(text, i, lookup, result, line);
                    continue;
                }
                result.Append(c);
                i++;
            }
            return result.ToString();
        }

        /// <summary>The variable name a '$' at <paramref name="at"/>-1 refers to, or null.</summary>
        private static string? Reference(string text, int at)
        {
            if (text[at] == '{')
            {
                var close = text.IndexOf('}', at);
                if (close < 0)
                {
                    return null;
                }
                var inner = text[(at + 1)..close];
                var colon = inner.IndexOf(':', StringComparison.Ordinal);
                var name = colon < 0 ? inner : inner[..colon];
                return IsName(name) ? name : null;
            }
            var end = at;
            while (end < text.Length && (char.IsAsciiLetterOrDigit(text[end]) || text[end] == '_'))
            {
                end++;
            }
            return end > at ? text[at..end] : null;
        }

        private void From(int line, string rest)
        {
            if (_template is not null)
            {
                throw new DockerfileException(line, "a second FROM: multi-stage builds are not supported (one FROM per Dockerfile)");
            }
            var words = Words(rest, ArgLookup, line);
            if (words.Count > 0 && words[0].StartsWith("--", StringComparison.Ordinal))
            {
                throw new DockerfileException(line, $"FROM flags ({words[0]}) are not supported");
            }
            if (words.Count is not (1 or 3) || (words.Count == 3 && !words[1].Equals("AS", StringComparison.OrdinalIgnoreCase)) || words[0].Length == 0)
            {
                throw new DockerfileException(line, $"FROM takes an image or template name (and optionally 'AS name'), not '{rest}'");
            }
            var image = words[0];
            _template = image switch
            {
                TemplateBuilder.ScratchImage => TemplateBuilder.FromScratch(),
                TemplateBuilder.BaseImage or TemplateBuilder.BaseImage + ":latest" => TemplateBuilder.FromBaseImage(),
                _ => TemplateBuilder.FromTemplate(image),
            };
        }

        private void Arg(int line, string rest)
        {
            Require(line, "ARG", rest);
            foreach (var word in Words(rest, Lookup, line))
            {
                var eq = word.IndexOf('=', StringComparison.Ordinal);
                var name = eq < 0 ? word : word[..eq];
                if (!IsName(name))
                {
                    throw new DockerfileException(line, $"ARG '{word}': '{name}' is not a valid name");
                }
                _args[name] = buildArgs.TryGetValue(name, out var given) ? given
                    : eq >= 0 ? word[(eq + 1)..]
                    : _args.GetValueOrDefault(name, "");
            }
        }

        private void Env(int line, string rest)
        {
            Require(line, "ENV", rest);
            var pairs = new List<KeyValuePair<string, string>>();
            var firstSpace = rest.IndexOfAny([' ', '\t']);
            var firstEq = rest.IndexOf('=', StringComparison.Ordinal);
            if (firstEq < 0 || (firstSpace >= 0 && firstSpace < firstEq))
            {
                // The old form, "ENV NAME value with spaces": one variable, the rest of the line its value.
                if (firstSpace < 0)
                {
                    throw new DockerfileException(line, $"ENV {rest}: a value is missing (ENV NAME=value or ENV NAME value)");
                }
                var name = rest[..firstSpace];
                var value = string.Join(' ', Words(rest[(firstSpace + 1)..], Lookup, line));
                pairs.Add(new(name, value));
            }
            else
            {
                foreach (var word in Words(rest, Lookup, line))
                {
                    var eq = word.IndexOf('=', StringComparison.Ordinal);
                    if (eq <= 0)
                    {
                        throw new DockerfileException(line, $"ENV '{word}' is not NAME=value");
                    }
                    pairs.Add(new(word[..eq], word[(eq + 1)..]));
                }
            }
            foreach (var (name, value) in pairs)
            {
                if (!IsName(name))
                {
                    throw new DockerfileException(line, $"ENV: '{name}' is not a valid variable name");
                }
                _env[name] = value;
            }
            _template!.Add(TemplateStepKind.Env, pairs.SelectMany(p => new[] { p.Key, p.Value }).ToList(), line);
        }

        private void Copy(int line, string keyword, string rest)
        {
            Require(line, keyword, rest);
            var words = ExecForm(rest) is { } json
                ? json.Select(w => Substitute(w, line, Lookup, quotes: false)).ToList()
                : Words(rest, Lookup, line);
            string? owner = null;
            string? mode = null;
            while (words.Count > 0 && words[0].StartsWith("--", StringComparison.Ordinal))
            {
                var flag = words[0];
                words.RemoveAt(0);
                var eq = flag.IndexOf('=', StringComparison.Ordinal);
                var (name, value) = eq < 0 ? (flag, "") : (flag[..eq], flag[(eq + 1)..]);
                switch (name)
                {
                    case "--chown" when value.Length > 0:
                        owner = value;
                        break;
                    case "--chmod" when value.Length is > 0 and <= 4 && value.All(c => c is >= '0' and <= '7'):
                        mode = value;
                        break;
                    case "--from":
                        throw new DockerfileException(line, $"{keyword} --from copies from another build stage or image: multi-stage builds are not supported");
                    case "--link":
                        break; // a layer-sharing hint to BuildKit; the result is the same
                    default:
                        throw new DockerfileException(line, $"{keyword} flag '{flag}' is not supported (supported: --chown=USER[:GROUP], --chmod=OCTAL)");
                }
            }
            if (words.Count < 2)
            {
                throw new DockerfileException(line, $"{keyword} needs at least one source and a destination");
            }
            var destination = words[^1];
            if (!destination.StartsWith('/'))
            {
                destination = Combine(_workdir ?? "/", destination) + (destination.EndsWith('/') ? "/" : "");
            }
            foreach (var source in words[..^1])
            {
                if (keyword == "ADD" && (source.Contains("://", StringComparison.Ordinal) || source.StartsWith("git@", StringComparison.Ordinal)))
                {
                    throw new DockerfileException(line, $"ADD of a URL ({source}) is not supported: download it in a RUN step");
                }
                if (keyword == "ADD" && ArchiveSuffixes.Any(s => source.EndsWith(s, StringComparison.OrdinalIgnoreCase)))
                {
                    throw new DockerfileException(line, $"ADD of a local archive ({source}) would unpack it, which is not supported: COPY it and unpack it in a RUN step");
                }
                if (CopySources.Escapes(source))
                {
                    throw new DockerfileException(line, $"{keyword} source '{source}' is outside the build context (sources are relative paths inside it, without '..')");
                }
                // Docker's COPY without --chown makes root the owner, whatever USER says.
                _template!.Add(TemplateStepKind.Copy, mode is null ? [source, destination, owner ?? "root"] : [source, destination, owner ?? "root", mode], line);
            }
        }

        private string? StartCommand()
        {
            var (cmdExec, cmdShell) = _cmd ?? (null, null);
            if (_entrypoint is not { } entry)
            {
                return cmdExec is not null ? ShellJoin(cmdExec) : cmdShell;
            }
            if (entry.Shell is { } shell)
            {
                return shell; // Docker ignores CMD after an ENTRYPOINT in shell form
            }
            var argv = new List<string>(entry.Exec!);
            if (cmdExec is not null)
            {
                argv.AddRange(cmdExec);
            }
            else if (cmdShell is not null)
            {
                argv.AddRange(["/bin/sh", "-c", cmdShell]);
            }
            return argv.Count == 0 ? null : ShellJoin(argv);
        }

        private static string Combine(string directory, string relative)
        {
            var parts = new List<string>();
            foreach (var part in (directory.TrimEnd('/') + "/" + relative).Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                if (part == "..")
                {
                    if (parts.Count > 0)
                    {
                        parts.RemoveAt(parts.Count - 1);
                    }
                }
                else if (part != ".")
                {
                    parts.Add(part);
                }
            }
            return "/" + string.Join('/', parts);
        }
    }
}
