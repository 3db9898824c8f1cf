using System.Data.Common;

namespace Paddock.Daemon.Store;

/// <summary>
/// Connections to whichever store the daemon runs on, for tables whose SQL is the same in both dialects: named
/// parameters as <c>@name</c> (Microsoft.Data.Sqlite and Npgsql both take that form), integers as 64-bit values, and
/// only statements both engines know (SQLite has had <c>INSERT … ON CONFLICT … DO UPDATE</c> since 3.24).
/// </summary>
internal interface IStoreConnections
{
    /// <summary>An open connection; the caller disposes it.</summary>
    Task<DbConnection> OpenConnectionAsync(CancellationToken cancellationToken);

    /// <summary>Whether the error is a unique or primary key violation.</summary>
    bool IsUniqueViolation(DbException error);
}

/// <summary>Helpers for commands written for <see cref="IStoreConnections"/>.</summary>
internal static class StoreCommands
{
    public static DbCommand Command(this DbConnection connection, string sql, DbTransaction? transaction = null)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = transaction;
        return command;
    }

    public static DbCommand With(this DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return command;
    }
}
