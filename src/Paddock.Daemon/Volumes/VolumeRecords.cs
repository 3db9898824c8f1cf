using System.Data.Common;
using Paddock.Daemon.Store;

namespace Paddock.Daemon.Volumes;

/// <summary>A team's volume as the store has it. The token is kept as is: E2B's GET /volumes/{id} answers it.</summary>
internal sealed record VolumeRecord
{
    public required string VolumeId { get; init; }

    public required string TeamId { get; init; }

    public required string Name { get; init; }

    public required string Token { get; init; }

    public required long SizeBytes { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }
}

/// <summary>One volume mounted by one sandbox.</summary>
internal sealed record SandboxVolumeMount(string SandboxId, string VolumeId, string Name, string Path);

/// <summary>
/// The volumes and sandbox_volume_mounts tables (schema step 7), in whichever store the daemon runs on: the SQL here
/// is the same for SQLite and PostgreSQL (<see cref="IStoreConnections"/>).
/// </summary>
internal sealed class VolumeRecords(IStoreConnections store)
{
    private const string Columns = "SELECT volume_id, team_id, name, token, size_bytes, created_at FROM volumes";

    public async Task<IReadOnlyList<VolumeRecord>> ListAsync(string? teamId, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = teamId is null
            ? connection.Command($"{Columns} ORDER BY created_at, volume_id;")
            : connection.Command($"{Columns} WHERE team_id = @team ORDER BY created_at, volume_id;").With("@team", teamId);
        var volumes = new List<VolumeRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            volumes.Add(new VolumeRecord
            {
                VolumeId = reader.GetString(0),
                TeamId = reader.GetString(1),
                Name = reader.GetString(2),
                Token = reader.GetString(3),
                SizeBytes = reader.GetInt64(4),
                CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
            });
        }
        return volumes;
    }

    /// <summary>Inserts a volume; false when the team has one of that name already.</summary>
    public async Task<bool> InsertAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("""
            INSERT INTO volumes (volume_id, team_id, name, token, size_bytes, created_at)
            VALUES (@id, @team, @name, @token, @size, @at);
            """)
            .With("@id", volume.VolumeId)
            .With("@team", volume.TeamId)
            .With("@name", volume.Name)
            .With("@token", volume.Token)
            .With("@size", volume.SizeBytes)
            .With("@at", volume.CreatedAt.ToUnixTimeMilliseconds());
        try
        {
            await command.ExecuteNonQueryAsync(cancellationToken);
            return true;
        }
        catch (DbException ex) when (store.IsUniqueViolation(ex))
        {
            return false;
        }
    }

    public async Task DeleteAsync(string volumeId, CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("DELETE FROM volumes WHERE volume_id = @id;").With("@id", volumeId);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task InsertMountsAsync(IReadOnlyList<SandboxVolumeMount> mounts, CancellationToken cancellationToken)
    {
        if (mounts.Count == 0)
        {
            return;
        }
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        foreach (var mount in mounts)
        {
            await using var command = connection.Command("""
                INSERT INTO sandbox_volume_mounts (sandbox_id, volume_id, name, path) VALUES (@s, @v, @n, @p)
                ON CONFLICT (sandbox_id, path) DO UPDATE SET volume_id = excluded.volume_id, name = excluded.name;
                """, transaction)
                .With("@s", mount.SandboxId)
                .With("@v", mount.VolumeId)
                .With("@n", mount.Name)
                .With("@p", mount.Path);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>Drops the mounts of sandboxes whose record is gone (purged after its retention); returns how many.</summary>
    public async Task<int> PurgeMountsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("DELETE FROM sandbox_volume_mounts WHERE sandbox_id NOT IN (SELECT sandbox_id FROM sandboxes);");
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Every mount of every sandbox (for the in-memory view at start).</summary>
    public async Task<IReadOnlyList<SandboxVolumeMount>> ListMountsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await store.OpenConnectionAsync(cancellationToken);
        await using var command = connection.Command("SELECT sandbox_id, volume_id, name, path FROM sandbox_volume_mounts ORDER BY sandbox_id, path;");
        var mounts = new List<SandboxVolumeMount>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            mounts.Add(new SandboxVolumeMount(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3)));
        }
        return mounts;
    }
}
