using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Npgsql;

namespace Paddock.Daemon.Tests.Store;

/// <summary>
/// A real PostgreSQL (Debian's package, installed by scripts/setup) in a temporary directory: its own data directory,
/// reachable only by a Unix socket in that directory (listen_addresses is empty, so no TCP port is taken and runs in
/// parallel cannot collide). postgres refuses to run as root, so initdb and the server run as the package's
/// <c>postgres</c> user through setpriv, which execs (no fork): the process started is the server itself, stopped by
/// its pid. Durability is switched off (fsync, synchronous_commit): the data is thrown away at the end.
/// </summary>
internal sealed partial class PostgresServer : IAsyncDisposable
{
    private const string OsUser = "postgres";
    private const int Port = 5432;

    private readonly string _bin;
    private readonly StringBuilder _log = new();
    private Process? _server;
    private int _databases;

    private PostgresServer(string bin, string root)
    {
        _bin = bin;
        Root = root;
    }

    /// <summary>The temporary directory: data/ and the server's socket.</summary>
    public string Root { get; }

    public string SocketDirectory => Root;

    public int? ServerPid => _server is { HasExited: false } p ? p.Id : null;

    public static async Task<PostgresServer> StartAsync(CancellationToken cancellationToken)
    {
        var bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "postgres")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), CultureInfo.InvariantCulture, out var v) ? v : 0).FirstOrDefault()
            : null;
        if (bin is null)
        {
            throw new InvalidOperationException("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): run scripts/setup, which installs Debian's postgresql");
        }
        var root = Directory.CreateTempSubdirectory("paddock-pg-").FullName;
        var server = new PostgresServer(bin, root);
        try
        {
            await RunAsync("chown", [OsUser + ":" + OsUser, root], cancellationToken);
            await RunAsync("setpriv", [.. AsPostgres, Path.Combine(bin, "initdb"), "-D", Path.Combine(root, "data"), "--auth=trust",
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

    private static string[] AsPostgres => ["--reuid=" + OsUser, "--regid=" + OsUser, "--clear-groups", "--"];

    /// <summary>Starts the server on the existing data directory and waits (bounded) until it answers.</summary>
    public async Task StartServerAsync(CancellationToken cancellationToken)
    {
        if (_server is { HasExited: false })
        {
            throw new InvalidOperationException("the PostgreSQL server is already running");
        }
        var start = new ProcessStartInfo("setpriv")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var arg in (string[])[.. AsPostgres, Path.Combine(_bin, "postgres"), "-D", Path.Combine(Root, "data"), "-k", SocketDirectory,
            "-p", Port.ToString(CultureInfo.InvariantCulture), "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=200"])
        {
            start.ArgumentList.Add(arg);
        }
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start postgres");
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
                throw new InvalidOperationException($"postgres exited with {process.ExitCode} while starting:\n{Log}");
            }
            try
            {
                await using var connection = new NpgsqlConnection(ConnectionString("postgres") + ";Pooling=false;Timeout=2");
                await connection.OpenAsync(cancellationToken);
                return;
            }
            catch (NpgsqlException) when (attempt < 300)
            {
                await Task.Delay(100, cancellationToken);
            }
        }
    }

    /// <summary>Stops the server (fast shutdown: SIGINT, then SIGKILL if it has not exited within 20 s); the data stays.</summary>
    public async Task StopServerAsync()
    {
        if (_server is not { } process)
        {
            return;
        }
        _server = null;
        if (!process.HasExited)
        {
            _ = kill(process.Id, 2); // SIGINT: PostgreSQL's fast shutdown
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

    /// <summary>An Npgsql connection string to <paramref name="database"/>.</summary>
    public string ConnectionString(string database) =>
        $"Host={SocketDirectory};Port={Port};Username=postgres;Database={database}";

    /// <summary>The same database as a <c>--store</c> URI.</summary>
    public string StoreUri(string database) =>
        $"postgres://postgres@localhost:{Port}/{database}?host={Uri.EscapeDataString(SocketDirectory)}";

    /// <summary>A new empty database with a unique name; returns its name.</summary>
    public async Task<string> CreateDatabaseAsync(CancellationToken cancellationToken)
    {
        var name = "t" + Interlocked.Increment(ref _databases).ToString(CultureInfo.InvariantCulture) + "_" + Guid.NewGuid().ToString("N")[..8];
        await using var connection = new NpgsqlConnection(ConnectionString("postgres") + ";Pooling=false");
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand($"CREATE DATABASE {name};", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
        return name;
    }

    public string Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToString();
            }
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_log)
        {
            // Bounded: the log is for failure messages only.
            if (_log.Length < 64 * 1024)
            {
                _log.AppendLine(line);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        try
        {
            await StopServerAsync();
        }
        finally
        {
            try
            {
                Directory.Delete(Root, recursive: true);
            }
            catch (IOException)
            {
                // Left in /tmp; nothing else uses it.
            }
        }
    }

    private static async Task RunAsync(string file, IEnumerable<string> args, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
        var stdout = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var stderr = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', start.ArgumentList)} exited with {process.ExitCode}: {await stderr}{await stdout}");
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);
}

/// <summary>One PostgreSQL server for every test class of the collection; each test makes its own database.</summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    private PostgresServer? _server;

    internal PostgresServer Server => _server ?? throw new InvalidOperationException("the PostgreSQL fixture did not start");

    public async Task InitializeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        _server = await PostgresServer.StartAsync(timeout.Token);
    }

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "PostgreSQL";
}
