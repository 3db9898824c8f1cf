using System.CommandLine;
using System.Globalization;
using System.Text;
using Paddock.Client;
using Paddock.Cli.Output;

namespace Paddock.Cli.Audit;

/// <summary>`paddock audit ID [--follow]`: a sandbox's audit trail, one line per event (or one JSON object per line).</summary>
internal static class AuditCommand
{
    public static Command Build()
    {
        var id = new Argument<string>("id") { Description = "The sandbox (running or ended)" };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new events until the sandbox ends (Ctrl-C stops)" };
        var command = new Command("audit", "Print what was done in a sandbox: commands with exit codes, PTY sessions, file writes, renames and removals") { id, follow };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var json = parse.GetValue(CliApp.Json);
            await foreach (var e in SandboxAudit.ReadAsync(parse.GetValue(id)!, parse.GetValue(follow), connection: settings.Connection, cancellationToken: ct))
            {
                Console.Out.Write((json ? CliJson.WriteLine(e) : Format(e)) + "\n");
                await Console.Out.FlushAsync(ct);
            }
            var page = await SandboxAudit.GetAsync(parse.GetValue(id)!, long.MaxValue - 1, 1, settings.Connection, ct);
            if (page.Dropped > 0 && !json)
            {
                Console.Error.Write($"paddock: {page.Dropped} events of this sandbox were not kept (after seq {page.DroppedAfterSeq}): the daemon keeps the first and the newest per sandbox\n");
            }
            return ExitCodes.Ok;
        }));
        return command;
    }

    internal static string Format(SandboxAuditEvent e)
    {
        var text = new StringBuilder();
        text.Append(e.At.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss.fff", CultureInfo.InvariantCulture)).Append("  ").Append(e.Kind.PadRight(13));
        switch (e.Kind)
        {
            case "process.start" or "pty.open":
                text.Append(" pid ").Append(e.Pid?.ToString(CultureInfo.InvariantCulture) ?? "-").Append("  ").Append(e.Cmd);
                foreach (var arg in e.Args ?? [])
                {
                    text.Append(' ').Append(arg.Contains(' ', StringComparison.Ordinal) || arg.Length == 0 ? "'" + arg.Replace("'", "'\\''", StringComparison.Ordinal) + "'" : arg);
                }
                if (e.User is not null)
                {
                    text.Append("  user=").Append(e.User);
                }
                if (e.Cwd is not null)
                {
                    text.Append("  cwd=").Append(e.Cwd);
                }
                if (e.EnvNames is { Count: > 0 } env)
                {
                    text.Append("  env=").Append(string.Join(',', env));
                }
                break;
            case "process.end" or "pty.close":
                text.Append(" pid ").Append(e.Pid?.ToString(CultureInfo.InvariantCulture) ?? "-")
                    .Append("  exit ").Append(e.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "-");
                if (e.Status is not null)
                {
                    text.Append("  (").Append(e.Status).Append(')');
                }
                break;
            case "file.move":
                text.Append(' ').Append(e.Path).Append(" -> ").Append(e.Destination).Append("  http ").Append(e.HttpStatus?.ToString(CultureInfo.InvariantCulture));
                break;
            case "net.connect":
                text.Append(' ').Append(e.Protocol).Append(' ').Append(e.Address);
                if (e.Port is { } port)
                {
                    text.Append(':').Append(port.ToString(CultureInfo.InvariantCulture));
                }
                text.Append("  ").Append(e.Verdict);
                break;
            case "net.close":
                text.Append(' ').Append(e.Protocol).Append(' ').Append(e.Address);
                if (e.Port is { } closedPort)
                {
                    text.Append(':').Append(closedPort.ToString(CultureInfo.InvariantCulture));
                }
                text.Append("  out ").Append(e.BytesOut?.ToString(CultureInfo.InvariantCulture) ?? "-").Append(" B  in ")
                    .Append(e.BytesIn?.ToString(CultureInfo.InvariantCulture) ?? "-").Append(" B");
                if (e.DurationMs is { } ms)
                {
                    text.Append("  ").Append(ms.ToString(CultureInfo.InvariantCulture)).Append(" ms");
                }
                break;
            default:
                text.Append(' ').Append(e.Path).Append("  http ").Append(e.HttpStatus?.ToString(CultureInfo.InvariantCulture));
                break;
        }
        if (e.Note is not null)
        {
            text.Append("  note: ").Append(e.Note);
        }
        return text.ToString();
    }
}
