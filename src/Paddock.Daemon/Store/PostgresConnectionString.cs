using System.Globalization;
using Npgsql;

namespace Paddock.Daemon.Store;

/// <summary>
/// Turns the <c>--store</c> URI into an Npgsql connection string. The URI form is libpq's
/// (<c>postgres://user:password@host:port/database?sslmode=require</c>), which operators already write for psql;
/// Npgsql itself takes only key=value strings. A Unix socket directory is given as <c>?host=/run/postgresql</c> or as a
/// percent-encoded host (<c>postgres://user@%2Frun%2Fpostgresql/db</c>), as libpq accepts.
/// </summary>
internal static class PostgresConnectionString
{
    /// <summary>True for the URI schemes this store takes.</summary>
    public static bool IsPostgres(string text) =>
        text.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase) || text.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase);

    /// <summary>Throws <see cref="ArgumentException"/> with a message for the operator when the URI is not usable.</summary>
    public static string FromUri(string text)
    {
        if (!IsPostgres(text) || !Uri.TryCreate(text, UriKind.Absolute, out var uri))
        {
            throw new ArgumentException($"--store: '{Redact(text)}' is not a postgres://user:password@host:port/database URI");
        }
        var builder = new NpgsqlConnectionStringBuilder
        {
            // paddockd opens and closes a connection per store call; the pool keeps that cheap.
            Pooling = true,
            // Seconds to wait for a new connection (Npgsql's default, kept explicit). A stopped server refuses at once
            // (a 503 without waiting); this bounds only a host that drops packets. 5 s was too short under a load
            // average of 250 on this 2-core machine: a store test's create got 503 while postgres forked its backend.
            Timeout = 15,
            CommandTimeout = 30,
            ApplicationName = "paddockd",
        };
        var host = Uri.UnescapeDataString(uri.Host);
        if (host.Length > 0)
        {
            builder.Host = host;
        }
        if (!uri.IsDefaultPort && uri.Port > 0)
        {
            builder.Port = uri.Port;
        }
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            builder.Username = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            if (colon >= 0)
            {
                builder.Password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            }
        }
        var database = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (database.Length == 0)
        {
            throw new ArgumentException($"--store: '{Redact(text)}' names no database (postgres://…/DATABASE)");
        }
        builder.Database = database;
        foreach (var pair in uri.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = Uri.UnescapeDataString(eq < 0 ? pair : pair[..eq]);
            var value = eq < 0 ? "" : Uri.UnescapeDataString(pair[(eq + 1)..]);
            switch (key)
            {
                case "host":
                    builder.Host = value;
                    break;
                case "port":
                    builder.Port = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is > 0 and < 65536
                        ? port
                        : throw new ArgumentException($"--store: port '{value}' is not a port number");
                    break;
                case "sslmode":
                    builder.SslMode = Enum.TryParse<SslMode>(value.Replace("-", "", StringComparison.Ordinal), ignoreCase: true, out var mode)
                        ? mode
                        : throw new ArgumentException($"--store: sslmode '{value}' is not one of disable, allow, prefer, require, verify-ca, verify-full");
                    break;
                case "connect_timeout":
                    builder.Timeout = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
                        ? seconds
                        : throw new ArgumentException($"--store: connect_timeout '{value}' is not a positive number of seconds");
                    break;
                default:
                    throw new ArgumentException($"--store: unknown parameter '{key}' (known: host, port, sslmode, connect_timeout)");
            }
        }
        if (string.IsNullOrEmpty(builder.Host))
        {
            throw new ArgumentException($"--store: '{Redact(text)}' names no host (postgres://user@HOST/db, or ?host=/socket/dir)");
        }
        return builder.ConnectionString;
    }

    /// <summary>The URI without its password, for messages and logs.</summary>
    public static string Redact(string text)
    {
        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        var at = text.IndexOf('@', StringComparison.Ordinal);
        if (scheme < 0 || at < scheme)
        {
            return text;
        }
        var colon = text.IndexOf(':', scheme + 3);
        return colon > 0 && colon < at ? string.Concat(text.AsSpan(0, colon + 1), "***", text.AsSpan(at)) : text;
    }
}
