using Paddock.Client;

namespace Paddock.Mcp;

/// <summary>
/// Where the tools' calls go and with which key. <c>paddock mcp</c> gives the CLI's settings (one user, one key);
/// paddockd's <c>/mcp</c> gives, per request, its own loopback address and the caller's key, so that every tool call
/// passes through the same API and team checks as any other client's.
/// </summary>
internal interface IConnectionSource
{
    /// <summary>The connection for the tool call being served; throws <see cref="ModelContextProtocol.McpException"/> when there is none.</summary>
    ConnectionOptions Current { get; }
}

/// <summary>One fixed connection (the CLI's).</summary>
internal sealed class FixedConnectionSource(ConnectionOptions connection) : IConnectionSource
{
    public ConnectionOptions Current => connection;
}
