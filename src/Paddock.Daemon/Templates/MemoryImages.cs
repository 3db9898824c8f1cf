namespace Paddock.Daemon.Templates;

/// <summary>
/// Where a memory snapshot's capture lives (issue 15): next to the template's own layer, as <c>{layer}.memory</c>, so
/// that it goes with the layer and needs no column of its own; and the restored agent's access token kept in it.
/// </summary>
internal static class MemoryImages
{
    private const string AgentTokenFile = "agent-token";

    /// <summary>The capture's directory for a template whose own layer is <paramref name="ownLayer"/>.</summary>
    public static string PathFor(string ownLayer) => ownLayer + Suffix;

    /// <summary>What a capture's directory name adds to its layer's.</summary>
    public const string Suffix = ".memory";

    /// <summary>
    /// Keeps the source's envd access token (null: it had none): the restored agent still requires it until the new
    /// sandbox's own replaces it through <c>/init</c>. Readable by root only; the image holds it in memory anyway.
    /// </summary>
    public static void WriteAgentToken(string image, string? token)
    {
        var path = Path.Combine(image, AgentTokenFile);
        File.WriteAllText(path, token ?? "");
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    public static string? ReadAgentToken(string image)
    {
        var text = File.ReadAllText(Path.Combine(image, AgentTokenFile));
        return text.Length == 0 ? null : text;
    }
}
