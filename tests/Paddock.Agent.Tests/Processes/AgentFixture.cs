using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>One real agent shared by the tests of a class.</summary>
public sealed class AgentFixture : IAsyncLifetime
{
    private AgentProcess? _agent;

    public AgentProcess Agent => _agent ?? throw new InvalidOperationException("the agent has not started");

    public async Task InitializeAsync() => _agent = await AgentProcess.StartAsync();

    public async Task DisposeAsync()
    {
        if (_agent is not null)
        {
            await _agent.DisposeAsync();
        }
    }
}

/// <summary>Requests and calls the process tests share.</summary>
internal static class Calls
{
    public static CancellationTokenSource Timeout(int seconds = 30) => new(TimeSpan.FromSeconds(seconds));

    public static StartRequest Shell(string script, bool stdin = false, string? tag = null)
    {
        var request = new StartRequest { Process = new ProcessConfig { Cmd = "/bin/sh", Args = { "-c", script } }, Stdin = stdin };
        if (tag is not null)
        {
            request.Tag = tag;
        }
        return request;
    }

    public static ProcessSelector Pid(uint pid) => new() { Pid = pid };

    public static ProcessSelector Tag(string tag) => new() { Tag = tag };

    public static Task<ListResponse> ListAsync(this ConnectClient client, CancellationToken cancellationToken) =>
        client.UnaryAsync<ListRequest, ListResponse>("/process.Process/List", new ListRequest(), cancellationToken);

    public static Task<SendInputResponse> SendStdinAsync(this ConnectClient client, uint pid, string text, CancellationToken cancellationToken) =>
        client.UnaryAsync<SendInputRequest, SendInputResponse>("/process.Process/SendInput",
            new SendInputRequest { Process = Pid(pid), Input = new ProcessInput { Stdin = Google.Protobuf.ByteString.CopyFromUtf8(text) } }, cancellationToken);

    public static Task<SendInputResponse> SendPtyAsync(this ConnectClient client, uint pid, string text, CancellationToken cancellationToken) =>
        client.UnaryAsync<SendInputRequest, SendInputResponse>("/process.Process/SendInput",
            new SendInputRequest { Process = Pid(pid), Input = new ProcessInput { Pty = Google.Protobuf.ByteString.CopyFromUtf8(text) } }, cancellationToken);

    public static Task<CloseStdinResponse> CloseStdinAsync(this ConnectClient client, uint pid, CancellationToken cancellationToken) =>
        client.UnaryAsync<CloseStdinRequest, CloseStdinResponse>("/process.Process/CloseStdin", new CloseStdinRequest { Process = Pid(pid) }, cancellationToken);

    public static Task<SendSignalResponse> SignalAsync(this ConnectClient client, uint pid, Signal signal, CancellationToken cancellationToken) =>
        client.UnaryAsync<SendSignalRequest, SendSignalResponse>("/process.Process/SendSignal", new SendSignalRequest { Process = Pid(pid), Signal = signal }, cancellationToken);

    /// <summary>Polls <paramref name="condition"/> every 50 ms until it holds or the token ends (then throws).</summary>
    public static async Task EventuallyAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        while (!condition())
        {
            await Task.Delay(50, cancellationToken);
        }
    }
}
