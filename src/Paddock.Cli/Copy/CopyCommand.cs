using System.CommandLine;
using System.Globalization;
using Paddock.Cli.Exec;
using Paddock.Cli.Native;
using Paddock.Client;

namespace Paddock.Cli.Copy;

/// <summary>
/// `paddock cp SRC DST`: copies one file into or out of a sandbox; the sandbox side is written <c>ID:PATH</c>.
/// Streams both ways; shows progress on a terminal for files of 1 MiB and more (or with --progress).
/// </summary>
internal static class CopyCommand
{
    private const long ProgressThreshold = 1024 * 1024;

    public static Command Build()
    {
        var source = new Argument<string>("source") { Description = "LOCAL_PATH or SANDBOX_ID:PATH" };
        var destination = new Argument<string>("destination") { Description = "SANDBOX_ID:PATH or LOCAL_PATH" };
        var progress = new Option<bool>("--progress") { Description = "Always show progress (default: on a terminal, for files of 1 MiB and more)" };
        var quiet = new Option<bool>("--quiet", "-q") { Description = "Never show progress" };
        var user = new Option<string?>("--user", "-u") { Description = "Account that owns the written file in the sandbox" };
        var command = new Command("cp", "Copy a file into or out of a sandbox") { source, destination, progress, quiet, user };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var from = Location.Parse(parse.GetValue(source)!);
            var to = Location.Parse(parse.GetValue(destination)!);
            if ((from.SandboxId is null) == (to.SandboxId is null))
            {
                throw new CliException(ExitCodes.Usage, "exactly one side of 'paddock cp' must be in a sandbox, written SANDBOX_ID:PATH");
            }
            var show = parse.GetValue(quiet) ? Show.Never : parse.GetValue(progress) ? Show.Always : Terminal.IsTerminal(2) ? Show.Large : Show.Never;
            var options = new FilesystemOptions { User = parse.GetValue(user) };
            await using var sandbox = await CliSandbox.ConnectAsync((from.SandboxId ?? to.SandboxId)!, settings, ct);
            return to.SandboxId is not null
                ? await UploadAsync(sandbox, from.Path, to.Path, options, show, ct)
                : await DownloadAsync(sandbox, from.Path, to.Path, options, show, ct);
        }));
        return command;
    }

    private static async Task<int> UploadAsync(Sandbox sandbox, string local, string remote, FilesystemOptions options, Show show, CancellationToken cancellationToken)
    {
        if (Directory.Exists(local))
        {
            throw new CliException(ExitCodes.Usage, $"{local} is a directory; paddock cp copies single files");
        }
        if (!File.Exists(local))
        {
            throw new CliException(ExitCodes.NotFound, $"no such local file: {local}");
        }
        if (remote.EndsWith('/'))
        {
            remote += Path.GetFileName(local);
        }
        await using var file = File.OpenRead(local);
        using var meter = new ProgressMeter(file.Length, show);
        await using var counted = new CountingStream(file, meter.Report);
        var written = await sandbox.Files.WriteAsync(remote, counted, options, cancellationToken);
        meter.Finish();
        await Console.Error.WriteLineAsync($"copied {local} to {sandbox.SandboxId}:{written.Path} ({Size(file.Length)})");
        return ExitCodes.Ok;
    }

    private static async Task<int> DownloadAsync(Sandbox sandbox, string remote, string local, FilesystemOptions options, Show show, CancellationToken cancellationToken)
    {
        if (Directory.Exists(local) || local.EndsWith('/'))
        {
            local = Path.Combine(local, Path.GetFileName(remote.TrimEnd('/')));
        }
        await using var download = await sandbox.Files.OpenReadAsync(remote, options, cancellationToken);
        long? length = null;
        try
        {
            length = download.Length;
        }
        catch (NotSupportedException)
        {
            // chunked answer without a length: progress shows bytes only
        }
        // Write beside the target and rename at the end, so a failed copy never leaves half a file under its name.
        var partial = local + ".paddock-partial";
        try
        {
            using var meter = new ProgressMeter(length, show);
            await using (var file = new FileStream(partial, FileMode.Create, FileAccess.Write, FileShare.None, 81920, useAsync: true))
            {
                var buffer = new byte[81920];
                int n;
                long total = 0;
                while ((n = await download.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    await file.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                    total += n;
                    meter.Report(total);
                }
            }
            File.Move(partial, local, overwrite: true);
            meter.Finish();
        }
        catch
        {
            File.Delete(partial);
            throw;
        }
        await Console.Error.WriteLineAsync($"copied {sandbox.SandboxId}:{remote} to {local} ({Size(new FileInfo(local).Length)})");
        return ExitCodes.Ok;
    }

    internal static string Size(long bytes) => bytes switch
    {
        < 1024 => $"{bytes} B",
        < 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        < 1024L * 1024 * 1024 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024):0.0} MiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes / (1024.0 * 1024 * 1024):0.00} GiB"),
    };

    private enum Show
    {
        Never,
        Large,
        Always,
    }

    /// <summary>LOCAL_PATH, or SANDBOX_ID:PATH (an id has no '/', so ./a:b and /x:y stay local).</summary>
    private readonly record struct Location(string? SandboxId, string Path)
    {
        public static Location Parse(string text)
        {
            var colon = text.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0 && !text[..colon].Contains('/', StringComparison.Ordinal))
            {
                var path = text[(colon + 1)..];
                if (path.Length == 0)
                {
                    throw new CliException(ExitCodes.Usage, $"'{text}' names no path in the sandbox");
                }
                return new Location(text[..colon], path);
            }
            return new Location(null, text);
        }
    }

    /// <summary>Progress on stderr, redrawn at most ten times a second.</summary>
    private sealed class ProgressMeter : IDisposable
    {
        private readonly long? _total;
        private readonly bool _enabled;
        private long _lastDraw;
        private long _lastDrawn = -1;
        private long _done;
        private bool _drawn;

        public ProgressMeter(long? total, Show show)
        {
            _total = total;
            _enabled = show == Show.Always || (show == Show.Large && (total is null || total >= ProgressThreshold));
        }

        public void Report(long done)
        {
            _done = done;
            if (!_enabled)
            {
                return;
            }
            var now = Environment.TickCount64;
            if (done == _lastDrawn || (now - _lastDraw < 100 && done != _total))
            {
                return;
            }
            _lastDraw = now;
            Draw();
        }

        public void Finish()
        {
            if (_enabled)
            {
                Draw();
                Console.Error.Write('\n');
            }
        }

        private void Draw()
        {
            if (_done == _lastDrawn)
            {
                return;
            }
            _lastDrawn = _done;
            _drawn = true;
            var text = _total is { } total && total > 0
                ? string.Create(CultureInfo.InvariantCulture, $"\r{Size(_done)} / {Size(total)} ({100.0 * _done / total:0}%)   ")
                : $"\r{Size(_done)}   ";
            Console.Error.Write(text);
        }

        public void Dispose()
        {
            if (_drawn && _enabled && _done != _total)
            {
                Console.Error.Write('\n');
            }
        }
    }

    /// <summary>A read-only stream that reports how many bytes have been read through it.</summary>
    private sealed class CountingStream : Stream
    {
        private readonly Stream _inner;
        private readonly Action<long> _report;
        private long _count;

        public CountingStream(Stream inner, Action<long> report)
        {
            _inner = inner;
            _report = report;
        }

        public override bool CanRead => true;
        public override bool CanSeek => _inner.CanSeek;
        public override bool CanWrite => false;
        public override long Length => _inner.Length;
        public override long Position { get => _inner.Position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Counted(_inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Counted(await _inner.ReadAsync(buffer, cancellationToken));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        private int Counted(int n)
        {
            _count += n;
            _report(_count);
            return n;
        }
    }
}
