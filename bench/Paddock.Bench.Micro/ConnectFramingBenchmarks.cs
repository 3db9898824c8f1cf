using BenchmarkDotNet.Attributes;
using Google.Protobuf;
using Paddock.Agent.Processes;
using Paddock.Envd.Connect;
using Paddock.Envd.Process;

namespace Paddock.Bench.Micro;

/// <summary>
/// One data event of process output (64 KiB, what a busy command produces per event) framed for the wire, the agent's
/// hand encoders against Google.Protobuf's generic ones (the baseline: what the agent did before, and what any
/// generated Connect server does). JSON is what E2B's SDKs ask for.
/// </summary>
[MemoryDiagnoser]
public class ConnectFramingBenchmarks
{
    private OutputChunk _chunk = null!;
    private StartResponse _message = null!;
    private byte[] _buffer = null!;
    private byte[] _framed = null!;

    [Params(65536)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var data = new byte[Bytes];
        new Random(42).NextBytes(data);
        _chunk = OutputChunk.Rent(OutputKind.Stdout, Bytes);
        data.CopyTo(_chunk.Buffer);
        _chunk.Length = Bytes;
        _message = new StartResponse { Event = new ProcessEvent { Data = new ProcessEvent.Types.DataEvent { Stdout = ByteString.CopyFrom(data) } } };
        _buffer = new byte[Envelope.HeaderSize + 2 * Bytes + 256];
        var body = _message.ToByteArray();
        _framed = new byte[Envelope.HeaderSize + body.Length];
        Envelope.WriteHeader(_framed, 0, body.Length);
        body.CopyTo(_framed, Envelope.HeaderSize);
    }

    [Benchmark(Baseline = true, Description = "JSON, Google.Protobuf JsonFormatter")]
    public int JsonGeneric() => JsonFormatter.Default.Format(_message).Length;

    [Benchmark(Description = "JSON, agent's DataEventJson")]
    public int JsonAgent()
    {
        var length = DataEventJson.Length(_chunk);
        Envelope.WriteHeader(_buffer, 0, length);
        DataEventJson.Encode(_buffer.AsSpan(Envelope.HeaderSize, length), _chunk);
        return length;
    }

    [Benchmark(Description = "proto, Google.Protobuf WriteTo")]
    public int ProtoGeneric()
    {
        var length = _message.CalculateSize();
        Envelope.WriteHeader(_buffer, 0, length);
        _message.WriteTo(_buffer.AsSpan(Envelope.HeaderSize, length));
        return length;
    }

    [Benchmark(Description = "proto, agent's DataEventProto")]
    public int ProtoAgent()
    {
        var length = DataEventProto.Length(_chunk);
        Envelope.WriteHeader(_buffer, 0, length);
        DataEventProto.Encode(_buffer.AsSpan(Envelope.HeaderSize, length), _chunk);
        return length;
    }

    [Benchmark(Description = "proto, read an enveloped event (client side)")]
    public int ProtoRead()
    {
        var (_, length) = Envelope.ReadHeader(_framed);
        return StartResponse.Parser.ParseFrom(_framed.AsSpan(Envelope.HeaderSize, (int)length)).Event.Data.Stdout.Length;
    }
}
