using Paddock.Client;

namespace Paddock.Cli;

/// <summary>Turns every failure into one line for the user and an exit code.</summary>
internal static class Errors
{
    public static (int Code, string Message) Describe(Exception ex, CliSettings settings) => ex switch
    {
        CliException c => (c.ExitCode, c.Message),
        ServiceUnreachableException u when SameServer(u.Address, settings.ApiUrl) =>
            (ExitCodes.Unavailable, $"cannot reach the Paddock daemon at {settings.ApiUrl.GetLeftPart(UriPartial.Authority)} ({Cause(u)}). Is it running? Start it with 'paddock up', or set PADDOCK_URL."),
        ServiceUnreachableException u => (ExitCodes.Unavailable, u.Message),
        // 403: the key is valid but may not do this (a team route for admin keys only); another key would not be a fix for a typo.
        AuthenticationException { StatusCode: 403 } a => (ExitCodes.NoPermission, a.Message),
        AuthenticationException a => (ExitCodes.NoPermission, $"{a.Message}\nThe key used: {settings.KeySource}. Set PADDOCK_API_KEY to a key of this daemon."),
        SandboxNotFoundException n => (ExitCodes.NotFound, $"no such sandbox: '{n.SandboxId}' (it never existed, was killed, or timed out)"),
        NotFoundException n => (ExitCodes.NotFound, n.Message),
        TimeoutException t => (ExitCodes.Timeout, t.Message),
        OperationCanceledException => (ExitCodes.Interrupted, "interrupted"),
        SandboxException s => (ExitCodes.Failure, s.Message),
        IOException io => (ExitCodes.Failure, io.Message),
        UnauthorizedAccessException ua => (ExitCodes.NoPermission, ua.Message),
        ArgumentException a => (ExitCodes.Usage, a.Message),
        _ => (ExitCodes.Failure, $"unexpected error: {ex}"),
    };

    private static bool SameServer(Uri a, Uri b) => string.Equals(a.GetLeftPart(UriPartial.Authority), b.GetLeftPart(UriPartial.Authority), StringComparison.OrdinalIgnoreCase);

    private static string Cause(ServiceUnreachableException u)
    {
        var colon = u.Message.LastIndexOf(": ", StringComparison.Ordinal);
        return colon >= 0 ? u.Message[(colon + 2)..] : u.Message;
    }
}
