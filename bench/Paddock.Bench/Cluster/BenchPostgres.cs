using System.Globalization;
using System.Text;
using Paddock.Bench.Native;

namespace Paddock.Bench.Cluster;

/// <summary>
/// The cluster's store: Debian's PostgreSQL (installed by scripts/setup) in a temporary directory, reachable only by a
/// Unix socket there (no TCP port), run as the package's <c>postgres</c> user through setpriv (which execs, so the
/// process started is the server, stopped by its pid), durability off (the data is thrown away). The bench's own
/// minimal version of the tests' PostgresServer (tests/Paddock.Daemon.Tests/Store): that one is an xunit fixture over
/// Npgsql with a stop/start for outage tests; the bench needs none of that, and checks readiness with pg_isready and
/// makes databases with createdb, so it takes no database driver and no test code.
/// </summary>
internal sealed class BenchPostgres : IAsyncDisposable
{
    private const string OsUser = "postgres";
    private const int Port = 5432;

    private readonly string _bin;
    private readonly TextWriter _log;
    private readonly StringBuilder _output = new();
    private System.Diagnostics.Process? _server;

    private BenchPostgres(string bin, string root, TextWriter log)
    {
        _bin = bin;
        Root = root;
        _log = log;
    }

    /// <summary>The temporary directory: data/ and the server's socket.</summary>
    public string Root { get; }

    private static string[] AsPostgres => ["--reuid=" + OsUser, "--regid=" + OsUser, "--clear-groups", "--"];

    public static async Task<BenchPostgres> StartAsync(TextWriter log, CancellationToken cancellationToken)
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "postgres")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), CultureInfo.InvariantCulture, out var v) ? v : 0).FirstOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run scripts/setup, which installs Debian's postgresql");
        }
        var server = new BenchPostgres(bin, Directory.CreateTempSubdirectory("paddock-bench-pg-").FullName, log);
        try
        {
            await Tools.RunAsync("chown", [OsUser + ":" + OsUser, server.Root], cancellationToken);
            await Tools.RunAsync("setpriv", [.. AsPostgres, Path.Combine(bin, "initdb"), "-D", Path.Combine(server.Root, "data"), "--auth=trust",
                "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"], cancellationToken);
            await server.StartServerAsync(cancellationToken);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    private async Task StartServerAsync(CancellationToken cancellationToken)
    {
        var start = new System.Diagnostics.ProcessStartInfo("setpriv") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in (string[])[.. AsPostgres, Path.Combine(_bin, "postgres"), "-D", Path.Combine(Root, "data"), "-k", Root,
            "-p", Port.ToString(CultureInfo.InvariantCulture), "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=300"])
        {
            start.ArgumentList.Add(arg);
        }
        var process = System.Diagnostics.Process.Start(start) ?? throw new InvalidOperationException("could not start postgres");
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        _server = process;
        // Bounded: 300 tries 100 ms apart; postgres answers in well under a second on an idle machine.
        for (var attempt = 0; ; attempt++)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"postgres exited with {process.ExitCode} while starting:\n{Output}");
            }
            try
            {
                await Tools.RunAsync(Path.Combine(_bin, "pg_isready"), ["-h", Root, "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres"], cancellationToken);
                return;
            }
            catch (InvalidOperationException) when (attempt < 300)
            {
                await Task.Delay(100, cancellationToken);
            }
        }
    }

    /// <summary>A new empty database named <paramref name="name"/>.</summary>
    public Task CreateDatabaseAsync(string name, CancellationToken cancellationToken) =>
        Tools.RunAsync(Path.Combine(_bin, "createdb"), ["-h", Root, "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres", name], cancellationToken);

    /// <summary>The database as a <c>--store</c> URI.</summary>
    public string StoreUri(string database) =>
        $"postgres://postgres@localhost:{Port}/{database}?host={Uri.EscapeDataString(Root)}";

    /// <summary>One value of a query (psql, unaligned, no header): how the bench reads which node owns a sandbox.</summary>
    public async Task<string> ScalarAsync(string database, string sql, CancellationToken cancellationToken) =>
        (await Tools.RunAsync(Path.Combine(_bin, "psql"), ["-h", Root, "-p", Port.ToString(CultureInfo.InvariantCulture), "-U", "postgres",
            "-d", database, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], cancellationToken)).Trim();

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_output)
        {
            if (_output.Length < 64 * 1024)
            {
                _output.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is { } process)
        {
            _server = null;
            if (!process.HasExited)
            {
                Posix.Kill(process.Id, 2); // SIGINT: PostgreSQL's fast shutdown
                using var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20));
                try
                {
                    await process.WaitForExitAsync(wait.Token);
                }
                catch (OperationCanceledException)
                {
                    process.Kill();
                    await process.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10));
                }
            }
            process.Dispose();
        }
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException ex)
        {
            _log.WriteLine($"  could not remove {Root}: {ex.Message}");
        }
    }
}
