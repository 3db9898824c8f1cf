namespace Paddock.Agent.Users;

/// <summary>An account of the sandbox's own /etc/passwd, as commands and file operations act as it.</summary>
internal sealed record AgentUser(string Name, uint Uid, uint Gid, string Home, string Shell, IReadOnlyList<uint> Groups);
