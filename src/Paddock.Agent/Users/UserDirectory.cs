using Paddock.Envd.Connect;

namespace Paddock.Agent.Users;

/// <summary>
/// Looks accounts up in the sandbox's /etc/passwd and /etc/group directly rather than through NSS: the agent runs
/// in templates of any libc (or none), and only the files are common to all of them.
/// The files are re-read when their modification time changes, so a user added by a command is seen at once.
/// </summary>
internal sealed class UserDirectory
{
    private readonly string _passwdPath;
    private readonly string _groupPath;
    private readonly Lock _gate = new();
    private Snapshot _snapshot = Snapshot.Empty;

    public UserDirectory(string? defaultUser, string etcDirectory = "/etc")
    {
        _passwdPath = Path.Combine(etcDirectory, "passwd");
        _groupPath = Path.Combine(etcDirectory, "group");
        DefaultUserName = defaultUser;
    }

    /// <summary>The user a call without one acts as; null means the agent's own account.</summary>
    public string? DefaultUserName { get; set; }

    /// <summary>
    /// The account named <paramref name="name"/>, or the default user when it is null or empty.
    /// Throws <see cref="ConnectException"/> (unauthenticated) for a name that has no account.
    /// </summary>
    public AgentUser Resolve(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            name = DefaultUserName;
        }
        var snapshot = Current();
        if (string.IsNullOrEmpty(name))
        {
            var uid = Native.Identity.GetEffectiveUid();
            foreach (var u in snapshot.UsersByName.Values)
            {
                if (u.Uid == uid)
                {
                    return u;
                }
            }
            var home = Environment.GetEnvironmentVariable("HOME") ?? "/";
            return new AgentUser(uid.ToString(System.Globalization.CultureInfo.InvariantCulture), uid, Native.Identity.GetEffectiveGid(), home, "/bin/sh", []);
        }
        if (snapshot.UsersByName.TryGetValue(name, out var user))
        {
            return user;
        }
        throw new ConnectException(ConnectCode.Unauthenticated, $"invalid user: '{name}' has no account in this sandbox");
    }

    /// <summary>The name of a user id, or the number as text when it has no account.</summary>
    public string UserName(uint uid)
    {
        var snapshot = Current();
        return snapshot.UserNamesById.TryGetValue(uid, out var n) ? n : uid.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The name of a group id, or the number as text when it has no entry.</summary>
    public string GroupName(uint gid)
    {
        var snapshot = Current();
        return snapshot.GroupNamesById.TryGetValue(gid, out var n) ? n : gid.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    private Snapshot Current()
    {
        var passwdStamp = Stamp(_passwdPath);
        var groupStamp = Stamp(_groupPath);
        lock (_gate)
        {
            if (_snapshot.PasswdStamp != passwdStamp || _snapshot.GroupStamp != groupStamp)
            {
                _snapshot = Load(passwdStamp, groupStamp);
            }
            return _snapshot;
        }
    }

    private static DateTime Stamp(string path) => File.Exists(path) ? File.GetLastWriteTimeUtc(path) : DateTime.MinValue;

    private Snapshot Load(DateTime passwdStamp, DateTime groupStamp)
    {
        var groupNames = new Dictionary<uint, string>();
        var memberships = new Dictionary<string, List<uint>>(StringComparer.Ordinal);
        foreach (var line in ReadLines(_groupPath))
        {
            // name:password:gid:member,member
            var f = line.Split(':');
            if (f.Length < 4 || !uint.TryParse(f[2], out var gid))
            {
                continue;
            }
            groupNames.TryAdd(gid, f[0]);
            foreach (var member in f[3].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                if (!memberships.TryGetValue(member, out var list))
                {
                    memberships[member] = list = [];
                }
                list.Add(gid);
            }
        }

        var users = new Dictionary<string, AgentUser>(StringComparer.Ordinal);
        var userNames = new Dictionary<uint, string>();
        foreach (var line in ReadLines(_passwdPath))
        {
            // name:password:uid:gid:gecos:home:shell
            var f = line.Split(':');
            if (f.Length < 7 || !uint.TryParse(f[2], out var uid) || !uint.TryParse(f[3], out var gid))
            {
                continue;
            }
            var groups = memberships.TryGetValue(f[0], out var g) ? g.ToArray() : [];
            var shell = string.IsNullOrEmpty(f[6]) ? "/bin/sh" : f[6];
            var home = string.IsNullOrEmpty(f[5]) ? "/" : f[5];
            users.TryAdd(f[0], new AgentUser(f[0], uid, gid, home, shell, groups));
            userNames.TryAdd(uid, f[0]);
        }
        return new Snapshot(passwdStamp, groupStamp, users, userNames, groupNames);
    }

    private static IEnumerable<string> ReadLines(string path)
    {
        try
        {
            return File.ReadAllLines(path);
        }
        catch (IOException)
        {
            return [];
        }
        catch (UnauthorizedAccessException)
        {
            return [];
        }
    }

    private sealed record Snapshot(
        DateTime PasswdStamp,
        DateTime GroupStamp,
        Dictionary<string, AgentUser> UsersByName,
        Dictionary<uint, string> UserNamesById,
        Dictionary<uint, string> GroupNamesById)
    {
        public static readonly Snapshot Empty = new(DateTime.MaxValue, DateTime.MaxValue, [], [], []);
    }
}
