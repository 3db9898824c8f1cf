using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Paddock.Daemon.Runtimes.Gvisor;

/// <summary>Whether this host can run the gVisor tier: the runsc version found, or why not and how to fix it.</summary>
internal sealed record GvisorAvailability(bool IsAvailable, string? Version, string? Reason)
{
    public static GvisorAvailability Available(string version) => new(true, version, null);

    public static GvisorAvailability Unavailable(string reason) => new(false, null, reason);
}

/// <summary>
/// Checks the runsc binary before the tier is used, without starting a sandbox. A host without runsc still runs the
/// runc tier: the daemon asks this and answers a create that wants gVisor with the reason.
/// </summary>
internal static partial class GvisorProbe
{
    /// <summary>
    /// The oldest build accepted. Debian 12's runsc (2022-12-19) refuses coreutils' statx(AT_NO_AUTOMOUNT,
    /// STATX_MODE) with EINVAL (ls and stat fail in a Debian rootfs), and fails files on restore (FACTS.md); Debian
    /// 13's 2024-07-29 build is the one measured to work.
    /// </summary>
    public static readonly DateOnly MinimumBuild = new(2024, 7, 29);

    private const string Install = "install it with scripts/install-runsc (Debian 13's runsc 0.0~20240729, to " + GvisorOptions.DefaultRunscBinary + ") or set Gvisor:RunscBinary";

    // "runsc version 0.0~20240729.0" (Debian) or "runsc version release-20240729.0" (gVisor's own builds).
    [GeneratedRegex(@"runsc version (?:\S*?[~-])?(\d{8})(?:\.\d+)?")]
    private static partial Regex VersionLine();

    public static GvisorAvailability Probe(GvisorOptions options)
    {
        var binary = options.RunscBinary;
        if (!File.Exists(binary))
        {
            return GvisorAvailability.Unavailable($"the gVisor tier needs runsc at {binary}, which does not exist: {Install}");
        }
        string output;
        try
        {
            using var process = Process.Start(new ProcessStartInfo(binary, "--version")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            }) ?? throw new InvalidOperationException("no process");
            var read = process.StandardOutput.ReadToEndAsync();
            if (!process.WaitForExit(10_000))
            {
                process.Kill(entireProcessTree: true);
                return GvisorAvailability.Unavailable($"{binary} --version did not answer within 10 s");
            }
            output = read.GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is System.ComponentModel.Win32Exception or InvalidOperationException or IOException)
        {
            return GvisorAvailability.Unavailable($"cannot run {binary}: {ex.Message}; {Install}");
        }
        return Check(binary, output);
    }

    /// <summary>Judges what <c>runsc --version</c> printed.</summary>
    internal static GvisorAvailability Check(string binary, string versionOutput)
    {
        var line = versionOutput.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).FirstOrDefault() ?? "";
        var match = VersionLine().Match(line);
        if (!match.Success || !DateOnly.TryParseExact(match.Groups[1].Value, "yyyyMMdd", CultureInfo.InvariantCulture, DateTimeStyles.None, out var build))
        {
            return GvisorAvailability.Unavailable($"{binary} --version printed '{line}', not a runsc version: {Install}");
        }
        if (build < MinimumBuild)
        {
            return GvisorAvailability.Unavailable(
                $"{binary} is runsc {match.Groups[1].Value}, older than {MinimumBuild:yyyyMMdd}: that build refuses coreutils' statx (ls and stat fail in Debian rootfs); {Install}");
        }
        return GvisorAvailability.Available(line);
    }
}
