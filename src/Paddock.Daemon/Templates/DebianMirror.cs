namespace Paddock.Daemon.Templates;

/// <summary>
/// The Debian mirror the host itself uses, read from its APT configuration when a template is built, so that no
/// mirror is ever written into the repository.
/// </summary>
internal static class DebianMirror
{
    public const string Deb822Sources = "/etc/apt/sources.list.d/debian.sources";
    public const string LegacySources = "/etc/apt/sources.list";

    /// <summary>
    /// The first URI of a "deb" source that serves <paramref name="suite"/>, from the deb822 file, else from
    /// sources.list. Throws <see cref="InvalidOperationException"/> when neither names one.
    /// </summary>
    public static string Find(string suite, string deb822Path = Deb822Sources, string legacyPath = LegacySources)
    {
        if (File.Exists(deb822Path) && FromDeb822(File.ReadAllText(deb822Path), suite) is { } uri)
        {
            return uri;
        }
        if (File.Exists(legacyPath) && FromLegacy(File.ReadAllLines(legacyPath), suite) is { } legacy)
        {
            return legacy;
        }
        throw new InvalidOperationException($"no Debian source for suite '{suite}' in {deb822Path} or {legacyPath}: cannot choose a mirror for debootstrap");
    }

    /// <summary>deb822 (sources.list(5)): stanzas separated by blank lines, "Field: value" lines, '#' comments.</summary>
    internal static string? FromDeb822(string text, string suite)
    {
        foreach (var stanza in text.Replace("\r\n", "\n", StringComparison.Ordinal).Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            foreach (var line in stanza.Split('\n'))
            {
                if (line.StartsWith('#') || !line.Contains(':', StringComparison.Ordinal) || char.IsWhiteSpace(line.FirstOrDefault(' ')))
                {
                    continue;
                }
                var colon = line.IndexOf(':', StringComparison.Ordinal);
                fields[line[..colon].Trim()] = line[(colon + 1)..].Trim();
            }
            if (fields.GetValueOrDefault("Enabled", "yes").Equals("no", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            var types = Words(fields.GetValueOrDefault("Types"));
            var suites = Words(fields.GetValueOrDefault("Suites"));
            var uris = Words(fields.GetValueOrDefault("URIs"));
            if (types.Contains("deb") && suites.Contains(suite) && uris.Length > 0)
            {
                return uris[0];
            }
        }
        return null;
    }

    /// <summary>One-line style: "deb [options] URI suite component...".</summary>
    internal static string? FromLegacy(IEnumerable<string> lines, string suite)
    {
        foreach (var raw in lines)
        {
            var line = raw.Trim();
            if (!line.StartsWith("deb ", StringComparison.Ordinal))
            {
                continue;
            }
            var words = line[4..].Trim();
            if (words.StartsWith('['))
            {
                var end = words.IndexOf(']', StringComparison.Ordinal);
                words = end < 0 ? "" : words[(end + 1)..].Trim();
            }
            var parts = Words(words);
            if (parts.Length >= 2 && parts[1] == suite)
            {
                return parts[0];
            }
        }
        return null;
    }

    private static string[] Words(string? value) => value?.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries) ?? [];
}
