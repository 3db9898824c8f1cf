using System.Net;
using System.Text;
using Google.Protobuf;
using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Agent.Tests.Processes;

/// <summary>An agent with a small message limit, for requests that break the protocol.</summary>
public sealed class SmallLimitAgentFixture : IAsyncLifetime
{
    public const int Limit = 4096;

    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync() => Agent = await AgentProcess.StartAsync("--max-message-bytes", Limit.ToString(System.Globalization.CultureInfo.InvariantCulture));

    public Task DisposeAsync() => Agent.DisposeAsync().AsTask();
}

/// <summary>Malformed envelopes and oversized messages get the right Connect errors and the agent stays up.</summary>
public sealed class ProtocolErrorTests : IClassFixture<SmallLimitAgentFixture>
{
    private readonly SmallLimitAgentFixture _fixture;

    public ProtocolErrorTests(SmallLimitAgentFixture fixture)
    {
        _fixture = fixture;
    }

    private ConnectClient Client() => new(_fixture.Agent.Http);

    private static byte[] StartPayload() => Calls.Shell("echo hi").ToByteArray();

    [Fact]
    public async Task Invalid_envelope_flags_end_the_stream_with_invalid_argument()
    {
        using var cts = Calls.Timeout();
        var error = await StreamErrorAsync(ConnectClient.Envelope(0x80, StartPayload()), cts.Token);
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        await AssertStillServesAsync(cts.Token);
    }

    [Fact]
    public async Task A_truncated_envelope_ends_the_stream_with_invalid_argument()
    {
        using var cts = Calls.Timeout();
        var frame = ConnectClient.Envelope(0, StartPayload());
        var error = await StreamErrorAsync(frame[..(frame.Length - 3)], cts.Token);
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
        await AssertStillServesAsync(cts.Token);
    }

    [Fact]
    public async Task An_envelope_larger_than_the_limit_is_resource_exhausted_without_reading_it()
    {
        using var cts = Calls.Timeout();
        var header = new byte[5];
        Envelope.WriteHeader(header, 0, int.MaxValue); // announces 2 GiB, sends nothing of it
        var error = await StreamErrorAsync(header, cts.Token);
        Assert.Equal(ConnectCode.ResourceExhausted, error.Code);
        await AssertStillServesAsync(cts.Token);
    }

    [Fact]
    public async Task A_stream_message_that_is_not_protobuf_is_invalid_argument()
    {
        using var cts = Calls.Timeout();
        var error = await StreamErrorAsync(ConnectClient.Envelope(0, [0xff, 0xff, 0xff, 0xff]), cts.Token);
        Assert.Equal(ConnectCode.InvalidArgument, error.Code);
        await AssertStillServesAsync(cts.Token);
    }

    [Fact]
    public async Task An_oversized_unary_message_is_resource_exhausted()
    {
        using var cts = Calls.Timeout();
        var request = new SendInputRequest { Process = Calls.Pid(1), Input = new ProcessInput { Stdin = Google.Protobuf.ByteString.CopyFrom(new byte[SmallLimitAgentFixture.Limit * 2]) } };
        using var response = await Client().PostRawAsync("/process.Process/SendInput", "application/proto", request.ToByteArray(), cts.Token);
        Assert.Equal((HttpStatusCode)429, response.StatusCode);
        Assert.Contains("resource_exhausted", await response.Content.ReadAsStringAsync(cts.Token), StringComparison.Ordinal);
        await AssertStillServesAsync(cts.Token);
    }

    [Fact]
    public async Task Malformed_unary_bodies_are_invalid_argument_and_a_foreign_content_type_is_415()
    {
        using var cts = Calls.Timeout();
        using (var proto = await Client().PostRawAsync("/process.Process/SendSignal", "application/proto", [0xff, 0xff, 0xff], cts.Token))
        {
            Assert.Equal(HttpStatusCode.BadRequest, proto.StatusCode);
            Assert.Contains("invalid_argument", await proto.Content.ReadAsStringAsync(cts.Token), StringComparison.Ordinal);
        }
        using (var json = await Client().PostRawAsync("/process.Process/SendSignal", "application/json", Encoding.UTF8.GetBytes("{\"signal\": {}}"), cts.Token))
        {
            Assert.Equal(HttpStatusCode.BadRequest, json.StatusCode);
        }
        using (var text = await Client().PostRawAsync("/process.Process/List", "text/plain", Encoding.UTF8.GetBytes("{}"), cts.Token))
        {
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, text.StatusCode);
        }
        await AssertStillServesAsync(cts.Token);
    }

    private async Task<ConnectException> StreamErrorAsync(byte[] body, CancellationToken cancellationToken)
    {
        using var response = await Client().PostRawAsync("/process.Process/Start", "application/connect+proto", body, cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode); // stream errors travel in the end-of-stream message
        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var envelope = await ConnectClient.ReadEnvelopeAsync(stream, cancellationToken);
        Assert.NotNull(envelope);
        Assert.Equal(Envelope.EndStreamFlag, envelope.Value.Flags);
        return ConnectClient.ParseError(envelope.Value.Payload, 200);
    }

    private async Task AssertStillServesAsync(CancellationToken cancellationToken)
    {
        Assert.False(_fixture.Agent.HasExited);
        await using var run = await ProcessRun.StartAsync(Client(), Calls.Shell("echo alive"), cancellationToken);
        await run.WaitEndAsync(cancellationToken);
        Assert.Equal("alive\n", run.StdoutText);
    }
}
