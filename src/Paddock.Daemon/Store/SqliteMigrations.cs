namespace Paddock.Daemon.Store;

/// <summary>
/// The schema, as numbered steps. A step is never edited once released: a change is a new step. Each step runs in its
/// own transaction together with the row in <c>schema_migrations</c> that records it, so a crash leaves the database
/// either before or after the step. Times are Unix milliseconds and booleans integers. PostgreSQL runs these same
/// steps through <see cref="PostgresMigrations"/> (INTEGER read as BIGINT, AUTOINCREMENT as an identity column, and a
/// replacement table for SQLite-only SQL): write a new step in that portable subset, or add its replacement there.
/// </summary>
internal static class SqliteMigrations
{
    public static IReadOnlyList<(int Version, string Sql)> Steps { get; } =
    [
        (1, """
            CREATE TABLE sandboxes (
                sandbox_id            TEXT PRIMARY KEY,
                template_id           TEXT NOT NULL,
                alias                 TEXT,
                runtime               TEXT NOT NULL,
                state                 TEXT NOT NULL,
                metadata              TEXT NOT NULL,
                cpu_count             INTEGER NOT NULL,
                memory_mb             INTEGER NOT NULL,
                disk_mb               INTEGER NOT NULL,
                max_pids              INTEGER NOT NULL,
                started_at            INTEGER NOT NULL,
                end_at                INTEGER NOT NULL,
                ended_at              INTEGER,
                end_reason            TEXT,
                envd_access_token     TEXT,
                traffic_access_token  TEXT,
                allow_internet_access INTEGER,
                auto_pause            INTEGER NOT NULL
            );
            CREATE INDEX sandboxes_by_state ON sandboxes (state, started_at);
            CREATE TABLE sandbox_logs (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                sandbox_id TEXT NOT NULL,
                at         INTEGER NOT NULL,
                level      TEXT NOT NULL,
                message    TEXT NOT NULL
            );
            CREATE INDEX sandbox_logs_by_sandbox ON sandbox_logs (sandbox_id, seq);
            CREATE TABLE api_keys (
                key_hash   TEXT PRIMARY KEY,
                key_mask   TEXT NOT NULL,
                created_at INTEGER NOT NULL
            );
            """),
        // Tenants (issue 5): teams with limits, keys that belong to a team, sandboxes that record their team. What
        // existed before belongs to the default team, the admin team. A NULL limit means no team limit (the
        // daemon-wide one still holds). Key ids are random UUIDs; the subquery names the outer row so that SQLite
        // evaluates it per row instead of once.
        (2, """
            CREATE TABLE teams (
                team_id       TEXT PRIMARY KEY,
                name          TEXT NOT NULL UNIQUE,
                is_admin      INTEGER NOT NULL,
                max_sandboxes INTEGER,
                max_cpus      INTEGER,
                max_memory_mb INTEGER,
                created_at    INTEGER NOT NULL
            );
            INSERT INTO teams (team_id, name, is_admin, created_at) VALUES ('default', 'default', 1, 0);
            ALTER TABLE api_keys ADD COLUMN key_id TEXT;
            ALTER TABLE api_keys ADD COLUMN team_id TEXT NOT NULL DEFAULT 'default';
            ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT 'first key';
            ALTER TABLE api_keys ADD COLUMN revoked_at INTEGER;
            ALTER TABLE api_keys ADD COLUMN last_used_at INTEGER;
            UPDATE api_keys SET key_id = (
                SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3) || '-' || substr(h, 21, 12)
                FROM (SELECT lower(hex(randomblob(16))) AS h WHERE api_keys.key_hash IS NOT NULL));
            CREATE UNIQUE INDEX api_keys_by_id ON api_keys (key_id);
            CREATE INDEX api_keys_by_team ON api_keys (team_id);
            ALTER TABLE sandboxes ADD COLUMN team_id TEXT NOT NULL DEFAULT 'default';
            """),
        // Templates: built-ins (public, team_id NULL) and filesystem snapshots (a team's). layers is a JSON array of
        // host directories, top first, exactly as sandboxes mount them; own_layer is the one directory the template
        // added (removed with it), NULL for built-ins, whose rootfs the template store owns, and for built templates,
        // whose layers belong to the layer cache (template_layer_cache: one layer per build step and all before it).
        (3, """
            CREATE TABLE templates (
                template_id       TEXT PRIMARY KEY,
                team_id           TEXT,
                names             TEXT NOT NULL,
                kind              TEXT NOT NULL,
                layers            TEXT NOT NULL,
                own_layer         TEXT,
                size_bytes        INTEGER NOT NULL,
                created_at        INTEGER NOT NULL,
                parent_id         TEXT,
                source_sandbox_id TEXT,
                default_user      TEXT,
                public            INTEGER NOT NULL,
                env               TEXT,
                workdir           TEXT,
                start_cmd         TEXT,
                ready_cmd         TEXT
            );
            CREATE INDEX templates_by_parent ON templates (parent_id);
            CREATE INDEX templates_by_team ON templates (team_id, created_at);
            CREATE TABLE template_layer_cache (
                cache_key  TEXT PRIMARY KEY,
                layer      TEXT NOT NULL,
                size_bytes INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            """),
        // Isolation tiers (issue 14): a template's default tier (NULL: the daemon's) and the one tier a team is bound to
        // (NULL: any). A sandbox's tier was recorded from the start (sandboxes.runtime).
        (4, """
            ALTER TABLE templates ADD COLUMN isolation TEXT;
            ALTER TABLE teams ADD COLUMN isolation TEXT;
            """),
        // The audit trail (issue 20, Audit/): what was done in each sandbox, kept after it ends for its own retention.
        // data is the event as JSON (Audit/AuditEvent.cs); team_id is copied so that a trail outlives its sandbox
        // record. audit_counts holds each sandbox's bound bookkeeping: rows kept, rows dropped past the bound, and the
        // last seq of the kept head (the gap starts after it).
        (5, """
            CREATE TABLE audit_events (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                sandbox_id TEXT NOT NULL,
                team_id    TEXT NOT NULL,
                at         INTEGER NOT NULL,
                kind       TEXT NOT NULL,
                data       TEXT NOT NULL
            );
            CREATE INDEX audit_events_by_sandbox ON audit_events (sandbox_id, seq);
            CREATE INDEX audit_events_by_time ON audit_events (at);
            CREATE TABLE audit_counts (
                sandbox_id  TEXT PRIMARY KEY,
                kept        INTEGER NOT NULL,
                dropped     INTEGER NOT NULL,
                head_end    INTEGER,
                last_at     INTEGER NOT NULL
            );
            """),
        // Pause and resume (issue 15): a sandbox can be 'paused' (state), with when and whether its memory was kept;
        // create's autoPause memory choice and autoResume; a team's bound on paused sandboxes (NULL: the daemon's).
        (6, """
            ALTER TABLE sandboxes ADD COLUMN auto_pause_memory INTEGER NOT NULL DEFAULT 1;
            ALTER TABLE sandboxes ADD COLUMN auto_resume INTEGER NOT NULL DEFAULT 0;
            ALTER TABLE sandboxes ADD COLUMN paused_at INTEGER;
            ALTER TABLE sandboxes ADD COLUMN paused_memory INTEGER;
            ALTER TABLE teams ADD COLUMN max_paused_sandboxes INTEGER;
            """),
        // Volumes (issue 15, Volumes/): a team's named volume (an ext4 image of size_bytes under the state directory)
        // and which sandbox mounts which volume at which path, kept after the sandbox ends (its detail shows them).
        (7, """
            CREATE TABLE volumes (
                volume_id  TEXT PRIMARY KEY,
                team_id    TEXT NOT NULL,
                name       TEXT NOT NULL,
                token      TEXT NOT NULL,
                size_bytes INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );
            CREATE UNIQUE INDEX volumes_by_team_name ON volumes (team_id, name);
            CREATE TABLE sandbox_volume_mounts (
                sandbox_id TEXT NOT NULL,
                volume_id  TEXT NOT NULL,
                name       TEXT NOT NULL,
                path       TEXT NOT NULL,
                PRIMARY KEY (sandbox_id, path)
            );
            CREATE INDEX sandbox_volume_mounts_by_volume ON sandbox_volume_mounts (volume_id);
            """),
        // Which node runs each sandbox (issue 17's cluster mode, PostgreSQL only; always null in SQLite): a daemon's
        // recovery reads only its own, a dead node's are marked lost by node (PostgresStore.MarkNodeLostAsync), and
        // the router finds a sandbox's node by it. A shared step, so that one SQL reads and writes records on both.
        (8, """
            ALTER TABLE sandboxes ADD COLUMN node_id TEXT;
            CREATE INDEX sandboxes_by_node ON sandboxes (node_id, state);
            """),
    ];
}
