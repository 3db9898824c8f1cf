namespace Paddock.Daemon.Cluster;

/// <summary>
/// The tables and stored queries of Orleans' ADO.NET clustering provider (Microsoft.Orleans.Clustering.AdoNet 10.4.2),
/// written for this project from the contract Orleans documents in its PostgreSQL scripts (src/AdoNet/Shared/
/// PostgreSQL-Main.sql and Orleans.Clustering.AdoNet/PostgreSQL-Clustering.sql in dotnet/orleans): the provider reads
/// every query text from <c>OrleansQuery</c> at start and refuses to start when a key it knows is missing (the
/// 10.4.2 assembly names eleven, <c>CleanupDefunctSiloEntryKey</c> among them); it binds parameters by name and reads
/// result columns by name, so the names and types below are the contract and the SQL behind them is ours.
/// <para>
/// The two writes that change membership (insert a silo, update a silo) must move the table version by exactly one
/// and only from the version the caller read (optimistic concurrency): each is a function that locks the version
/// row <c>FOR UPDATE</c>, which under READ COMMITTED re-reads it after a concurrent writer commits, returns 0 when
/// the version moved on, and otherwise writes both rows in the caller's transaction. Orleans reads the single value
/// as true when it is above zero.
/// </para>
/// Applied by <see cref="Store.PostgresMigrations.ClusterSteps"/> on every PostgreSQL store (cluster mode or not:
/// unused tables cost nothing, and a single node can then join a cluster later without a schema step).
/// </summary>
internal static class OrleansMembershipSchema
{
    public const string Sql = """
        CREATE TABLE OrleansQuery (
            QueryKey  varchar(64)   NOT NULL PRIMARY KEY,
            QueryText varchar(8000) NOT NULL
        );

        CREATE TABLE OrleansMembershipVersionTable (
            DeploymentId varchar(150)   NOT NULL PRIMARY KEY,
            Timestamp    timestamptz(3) NOT NULL DEFAULT now(),
            Version      integer        NOT NULL DEFAULT 0
        );

        CREATE TABLE OrleansMembershipTable (
            DeploymentId varchar(150)   NOT NULL REFERENCES OrleansMembershipVersionTable (DeploymentId),
            Address      varchar(45)    NOT NULL,
            Port         integer        NOT NULL,
            Generation   integer        NOT NULL,
            SiloName     varchar(150)   NOT NULL,
            HostName     varchar(150)   NOT NULL,
            Status       integer        NOT NULL,
            ProxyPort    integer,
            SuspectTimes varchar(8000),
            StartTime    timestamptz(3) NOT NULL,
            IAmAliveTime timestamptz(3) NOT NULL,
            PRIMARY KEY (DeploymentId, Address, Port, Generation)
        );

        CREATE FUNCTION paddock_orleans_insert_member(
            p_deployment varchar, p_address varchar, p_port integer, p_generation integer, p_silo_name varchar,
            p_host_name varchar, p_status integer, p_proxy_port integer, p_start timestamptz, p_alive timestamptz,
            p_version integer) RETURNS integer AS $body$
        BEGIN
            PERFORM 1 FROM OrleansMembershipVersionTable
                WHERE DeploymentId = p_deployment AND Version = p_version FOR UPDATE;
            IF NOT FOUND THEN
                RETURN 0;
            END IF;
            INSERT INTO OrleansMembershipTable (DeploymentId, Address, Port, Generation, SiloName, HostName, Status,
                                                ProxyPort, StartTime, IAmAliveTime)
                VALUES (p_deployment, p_address, p_port, p_generation, p_silo_name, p_host_name, p_status,
                        p_proxy_port, p_start, p_alive)
                ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                RETURN 0;
            END IF;
            UPDATE OrleansMembershipVersionTable SET Version = Version + 1, Timestamp = now()
                WHERE DeploymentId = p_deployment;
            RETURN 1;
        END
        $body$ LANGUAGE plpgsql;

        CREATE FUNCTION paddock_orleans_update_member(
            p_deployment varchar, p_address varchar, p_port integer, p_generation integer, p_status integer,
            p_suspect_times varchar, p_alive timestamptz, p_version integer) RETURNS integer AS $body$
        BEGIN
            PERFORM 1 FROM OrleansMembershipVersionTable
                WHERE DeploymentId = p_deployment AND Version = p_version FOR UPDATE;
            IF NOT FOUND THEN
                RETURN 0;
            END IF;
            UPDATE OrleansMembershipTable SET Status = p_status, SuspectTimes = p_suspect_times, IAmAliveTime = p_alive
                WHERE DeploymentId = p_deployment AND Address = p_address AND Port = p_port AND Generation = p_generation;
            IF NOT FOUND THEN
                RETURN 0;
            END IF;
            UPDATE OrleansMembershipVersionTable SET Version = Version + 1, Timestamp = now()
                WHERE DeploymentId = p_deployment;
            RETURN 1;
        END
        $body$ LANGUAGE plpgsql;

        INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
        ('InsertMembershipVersionKey', '
            WITH created AS (
                INSERT INTO OrleansMembershipVersionTable (DeploymentId) VALUES (@DeploymentId)
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT count(*)::integer FROM created;'),
        ('InsertMembershipKey', '
            SELECT paddock_orleans_insert_member(@DeploymentId, @Address, @Port, @Generation, @SiloName, @HostName,
                @Status, @ProxyPort, @StartTime, @IAmAliveTime, @Version);'),
        ('UpdateMembershipKey', '
            SELECT paddock_orleans_update_member(@DeploymentId, @Address, @Port, @Generation, @Status,
                @SuspectTimes, @IAmAliveTime, @Version);'),
        ('UpdateIAmAlivetimeKey', '
            UPDATE OrleansMembershipTable SET IAmAliveTime = @IAmAliveTime
            WHERE DeploymentId = @DeploymentId AND Address = @Address AND Port = @Port AND Generation = @Generation;'),
        ('MembershipReadRowKey', '
            SELECT v.DeploymentId, m.Address, m.Port, m.Generation, m.SiloName, m.HostName, m.Status, m.ProxyPort,
                   m.SuspectTimes, m.StartTime, m.IAmAliveTime, v.Version
            FROM OrleansMembershipVersionTable v
            LEFT JOIN OrleansMembershipTable m ON m.DeploymentId = v.DeploymentId
                AND m.Address = @Address AND m.Port = @Port AND m.Generation = @Generation
            WHERE v.DeploymentId = @DeploymentId;'),
        ('MembershipReadAllKey', '
            SELECT v.DeploymentId, m.Address, m.Port, m.Generation, m.SiloName, m.HostName, m.Status, m.ProxyPort,
                   m.SuspectTimes, m.StartTime, m.IAmAliveTime, v.Version
            FROM OrleansMembershipVersionTable v
            LEFT JOIN OrleansMembershipTable m ON m.DeploymentId = v.DeploymentId
            WHERE v.DeploymentId = @DeploymentId;'),
        ('DeleteMembershipTableEntriesKey', '
            DELETE FROM OrleansMembershipTable WHERE DeploymentId = @DeploymentId;
            DELETE FROM OrleansMembershipVersionTable WHERE DeploymentId = @DeploymentId;'),
        ('GatewaysQueryKey', '
            SELECT Address, ProxyPort, Generation FROM OrleansMembershipTable
            WHERE DeploymentId = @DeploymentId AND Status = @Status AND ProxyPort > 0;'),
        -- Status 6 is Orleans'' SiloStatus.Dead: only dead rows are ever removed, never a live silo''s.
        ('CleanupDefunctSiloEntriesKey', '
            DELETE FROM OrleansMembershipTable
            WHERE DeploymentId = @DeploymentId AND Status = 6 AND IAmAliveTime < @IAmAliveTime;'),
        ('CleanupDefunctSiloEntryKey', '
            DELETE FROM OrleansMembershipTable
            WHERE DeploymentId = @DeploymentId AND Status = 6
              AND Address = @Address AND Port = @Port AND Generation = @Generation
              AND IAmAliveTime = @IAmAliveTime AND StartTime = @StartTime
              AND SuspectTimes IS NOT DISTINCT FROM @SuspectTimes::varchar;');
        """;
}
