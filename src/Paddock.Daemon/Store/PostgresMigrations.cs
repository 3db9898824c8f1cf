using System.Text.RegularExpressions;

namespace Paddock.Daemon.Store;

/// <summary>
/// The PostgreSQL form of <see cref="SqliteMigrations.Steps"/>: the same numbered steps, one list, read through two
/// mechanical rewrites and a short table of per-step replacements for what the two dialects spell differently.
/// <list type="bullet">
/// <item><c>INTEGER PRIMARY KEY AUTOINCREMENT</c> becomes an identity column: SQLite's rowid alias has no PostgreSQL
/// equivalent.</item>
/// <item>Every other <c>INTEGER</c> becomes <c>BIGINT</c>: SQLite's INTEGER holds 64 bits, PostgreSQL's 32, and the
/// times here are Unix milliseconds (1.7e12, past int4's 2.1e9).</item>
/// <item><see cref="Replacements"/>: SQL that exists in SQLite only (step 2's <c>randomblob</c> key ids). Each entry
/// must match its step exactly once, or <see cref="Steps"/> throws: a step edited by mistake cannot silently lose its
/// PostgreSQL form.</item>
/// </list>
/// A new step written in the portable subset (TEXT, INTEGER, ALTER TABLE ADD COLUMN, CREATE INDEX, plain DML) needs
/// nothing here.
/// </summary>
internal static partial class PostgresMigrations
{
    /// <summary>Per step: a piece of the SQLite text and what PostgreSQL runs instead.</summary>
    internal static IReadOnlyList<(int Version, string Sqlite, string Postgres)> Replacements { get; } =
    [
        // Existing keys get random version-4 UUIDs as key ids; gen_random_uuid() is built in since PostgreSQL 13.
        (2, """
            UPDATE api_keys SET key_id = (
                SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-a' || substr(h, 18, 3) || '-' || substr(h, 21, 12)
                FROM (SELECT lower(hex(randomblob(16))) AS h WHERE api_keys.key_hash IS NOT NULL));
            """,
         "UPDATE api_keys SET key_id = gen_random_uuid()::text;"),
    ];

    /// <summary>
    /// Steps that exist on PostgreSQL only, for cluster mode (issue 17), numbered from 1001 so that the shared list
    /// keeps its own numbers (a new SQLite step 8 is still step 8 here, and a database that has 1001 still gets it).
    /// Applied on every PostgreSQL store, cluster mode or not: a single node can join a cluster later without a step.
    /// </summary>
    internal const int FirstClusterStep = 1001;

    internal static IReadOnlyList<(int Version, string Sql)> ClusterSteps { get; } =
    [
        // Where each node's API is (Cluster/ClusterRouter.cs forwards there); which node runs each sandbox is the
        // shared step 8's sandboxes.node_id.
        (1001, """
            CREATE TABLE cluster_nodes (
                node_id    TEXT PRIMARY KEY,
                api_url    TEXT NOT NULL,
                updated_at BIGINT NOT NULL
            );
            """),
        // Orleans' membership tables and queries (Cluster/OrleansMembershipSchema.cs).
        (1002, Cluster.OrleansMembershipSchema.Sql),
        // Templates across nodes (Cluster/ClusterTemplateReplicas.cs): each layer a node made, by its directory's name,
        // with the digest of its files computed when it was made (Templates/LayerTransfer.cs); and which nodes hold a
        // verified copy. A layer's name is the same on every node (a template id, or a build cache key).
        (1003, """
            CREATE TABLE cluster_layers (
                layer      TEXT PRIMARY KEY,
                digest     TEXT NOT NULL,
                size_bytes BIGINT NOT NULL,
                created_at BIGINT NOT NULL
            );
            CREATE TABLE cluster_layer_holders (
                layer      TEXT NOT NULL,
                node_id    TEXT NOT NULL,
                held_since BIGINT NOT NULL,
                PRIMARY KEY (layer, node_id)
            );
            """),
    ];

    private static readonly Lazy<IReadOnlyList<(int Version, string Sql)>> s_steps = new(Translate);

    /// <summary>Every step of <see cref="SqliteMigrations.Steps"/> in PostgreSQL's dialect, same versions.</summary>
    public static IReadOnlyList<(int Version, string Sql)> Steps => s_steps.Value;

    private static List<(int Version, string Sql)> Translate()
    {
        var steps = new List<(int, string)>();
        foreach (var (version, sqlite) in SqliteMigrations.Steps)
        {
            var sql = Normalize(sqlite);
            foreach (var (_, from, to) in Replacements.Where(r => r.Version == version))
            {
                var piece = Normalize(from).Trim();
                var at = sql.IndexOf(piece, StringComparison.Ordinal);
                if (at < 0 || sql.IndexOf(piece, at + 1, StringComparison.Ordinal) >= 0)
                {
                    throw new InvalidOperationException($"schema step {version}: its PostgreSQL replacement does not match the SQLite text exactly once");
                }
                sql = string.Concat(sql.AsSpan(0, at), to, sql.AsSpan(at + piece.Length));
            }
            sql = AutoIncrement().Replace(sql, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY");
            sql = Integer().Replace(sql, "BIGINT");
            steps.Add((version, sql));
        }
        return steps;
    }

    // Raw string literals keep the source file's line endings; compare on \n only.
    private static string Normalize(string sql) => sql.Replace("\r\n", "\n", StringComparison.Ordinal);

    [GeneratedRegex(@"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b")]
    private static partial Regex AutoIncrement();

    [GeneratedRegex(@"\bINTEGER\b")]
    private static partial Regex Integer();
}
