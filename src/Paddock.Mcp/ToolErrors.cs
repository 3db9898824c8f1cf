using ModelContextProtocol;
using Paddock.Client;

namespace Paddock.Mcp;

/// <summary>
/// Turns the SDK's failures into tool errors (<see cref="McpException"/>: the SDK answers a result with
/// <c>isError: true</c> and this message) that say what to do next, so that a model can correct itself. Anything
/// else escapes as it is, and the MCP SDK reports it as a tool error with a generic message.
/// </summary>
internal static class ToolErrors
{
    public static async Task<T> GuardAsync<T>(string? sandboxId, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (SandboxNotFoundException ex)
        {
            throw new McpException($"sandbox '{ex.SandboxId}' does not exist or has ended (killed, or its timeout passed). "
                + "Call list_sandboxes to see the running ones, or create_sandbox for a new one.", ex);
        }
        catch (AuthenticationException ex)
        {
            throw new McpException($"the server refused the credentials: {ex.Message}", ex);
        }
        catch (NotFoundException ex)
        {
            throw new McpException(ex.Message, ex);
        }
        catch (InvalidArgumentException ex)
        {
            throw new McpException($"the server refused the arguments: {ex.Message}", ex);
        }
        catch (ServiceUnreachableException ex)
        {
            throw new McpException(sandboxId is null
                ? $"the sandbox server is unreachable: {ex.Message}"
                : $"sandbox '{sandboxId}' is unreachable: {ex.Message}", ex);
        }
        catch (SandboxException ex)
        {
            throw new McpException(ex.Message, ex);
        }
        catch (SandboxTimeoutException ex)
        {
            throw new McpException(ex.Message, ex);
        }
    }

    public static McpException Invalid(string message) => new(message);
}
