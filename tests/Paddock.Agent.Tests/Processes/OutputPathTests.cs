using System.Text;
using Google.Protobuf;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Agent.Hosting;
using Paddock.Agent.Native;
using Paddock.Agent.Processes;
using Paddock.Agent.Tests.Connect;
using Paddock.Envd.Process;
using Paddock.Shared.Kestrel;

namespace Paddock.Agent.Tests.Processes;

/// <summary>
/// The output path's parts (the one-shot poller, the fan-out that sends from the pump, the JSON data events, the
/// large-block pool) and, against the real agent, output that floods in small writes arriving byte for byte.
/// </summary>
public sealed class OutputPathTests : IClassFixture<AgentFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private readonly AgentFixture _fixture;

    public OutputPathTests(AgentFixture fixture)
    {
        _fixture = fixture;
    }

    [Fact]
    public async Task The_poller_waits_for_output_reads_it_and_sees_end_of_file()
    {
        var poller = new OutputPoller(NullLogger<OutputPoller>.Instance);
        var (readEnd, writeEnd) = Descriptors.CreatePipe();
        using var reader = Descriptors.Own(readEnd);
        var writer = new FileStream(Descriptors.Own(writeEnd), FileAccess.Write, 0);
        using var source = poller.Add(reader);
        var buffer = new byte[64];

        Assert.Equal(-1, source.TryRead(buffer)); // nothing yet, and no blocking
        var pending = source.ReadAsync(buffer, CancellationToken.None).AsTask();
        Assert.False(pending.IsCompleted);
        writer.Write("hello"u8);
        var (n, waited) = await pending.WaitAsync(Wait);
        Assert.Equal("hello", Encoding.ASCII.GetString(buffer, 0, n));
        Assert.True(waited);

        // Output already there is read at once, without waiting.
        writer.Write("again"u8);
        (n, waited) = await source.ReadAsync(buffer, CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal("again", Encoding.ASCII.GetString(buffer, 0, n));
        Assert.False(waited);

        writer.Dispose();
        (n, _) = await source.ReadAsync(buffer, CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal(0, n);
    }

    [Fact]
    public async Task A_wait_for_output_can_be_cancelled_and_the_source_disposed_while_waiting()
    {
        var poller = new OutputPoller(NullLogger<OutputPoller>.Instance);
        var (readEnd, writeEnd) = Descriptors.CreatePipe();
        using var reader = Descriptors.Own(readEnd);
        using var writer = new FileStream(Descriptors.Own(writeEnd), FileAccess.Write, 0);
        var source = poller.Add(reader);
        var buffer = new byte[64];

        using (var cts = new CancellationTokenSource())
        {
            var cancelled = source.ReadAsync(buffer, cts.Token).AsTask();
            cts.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Wait));
        }

        // The registration stays usable after a cancelled wait.
        var pending = source.ReadAsync(buffer, CancellationToken.None).AsTask();
        writer.Write("x"u8);
        Assert.Equal(1, (await pending.WaitAsync(Wait)).Bytes);

        var orphaned = source.ReadAsync(buffer, CancellationToken.None).AsTask();
        source.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => orphaned.WaitAsync(Wait));
    }

    [Fact]
    public async Task The_fanout_holds_output_until_a_subscriber_starts_and_detaches_one_whose_send_fails()
    {
        var fanout = new OutputFanout();
        var good = new List<string>();
        using var steady = fanout.Subscribe(chunk =>
        {
            good.Add(Encoding.ASCII.GetString(chunk.Data.Span));
            return ValueTask.CompletedTask;
        });
        var failure = new IOException("the client went away");
        var failingSends = 0;
        using var failing = fanout.Subscribe(_ =>
        {
            failingSends++;
            throw failure;
        });

        var first = fanout.PublishAsync(Chunk("one")).AsTask();
        Assert.False(first.IsCompleted); // neither stream has written its start event yet
        steady.Start();
        failing.Start();
        await first.WaitAsync(Wait);
        await fanout.PublishAsync(Chunk("two")).AsTask().WaitAsync(Wait);
        fanout.Complete();

        Assert.Equal(["one", "two"], good);
        Assert.Equal(1, failingSends); // detached after its first failure
        Assert.Same(failure, await failing.Finished.WaitAsync(Wait));
        Assert.Null(await steady.Finished.WaitAsync(Wait));
    }

    [Fact]
    public async Task A_stream_that_ends_before_it_starts_does_not_hold_the_pump()
    {
        var fanout = new OutputFanout();
        var subscription = fanout.Subscribe(_ => throw new InvalidOperationException("never sent"));
        var publish = fanout.PublishAsync(Chunk("lost")).AsTask();
        subscription.Dispose();
        await publish.WaitAsync(Wait);
        await fanout.PublishAsync(Chunk("nobody listens")).AsTask().WaitAsync(Wait);
    }

    [Theory]
    [InlineData(0, 0)] // stdout
    [InlineData(0, 1)]
    [InlineData(1, 2)] // stderr
    [InlineData(2, 3)] // pty
    [InlineData(0, 100_000)]
    public void A_JSON_data_event_is_what_protojson_reads_back(int kindIndex, int length)
    {
        var kind = (OutputKind)kindIndex;
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        var chunk = OutputChunk.Rent(kind, Math.Max(1, length));
        bytes.CopyTo(chunk.Buffer);
        chunk.Length = length;
        var encoded = new byte[DataEventJson.Length(chunk)];
        DataEventJson.Encode(encoded, chunk);
        chunk.Release();

        var parsed = (StartResponse)JsonParser.Default.Parse(Encoding.UTF8.GetString(encoded), StartResponse.Descriptor);
        var data = parsed.Event.Data;
        var got = kind switch
        {
            OutputKind.Stdout => data.Stdout,
            OutputKind.Stderr => data.Stderr,
            _ => data.Pty,
        };
        Assert.Equal(bytes, got.ToByteArray());
        Assert.Equal(kind switch
        {
            OutputKind.Stdout => ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout,
            OutputKind.Stderr => ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr,
            _ => ProcessEvent.Types.DataEvent.OutputOneofCase.Pty,
        }, data.OutputCase);
    }

    [Theory]
    [InlineData(0, 0)] // stdout
    [InlineData(1, 1)] // stderr
    [InlineData(2, 127)] // pty; the largest one-byte length
    [InlineData(0, 128)]
    [InlineData(0, 16_384)]
    [InlineData(1, 1 << 20)]
    public void A_protobuf_data_event_is_what_the_generated_parser_reads_back(int kindIndex, int length)
    {
        var kind = (OutputKind)kindIndex;
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        var chunk = OutputChunk.Rent(kind, Math.Max(1, length));
        bytes.CopyTo(chunk.Buffer);
        chunk.Length = length;
        var encoded = new byte[DataEventProto.Length(chunk)];
        DataEventProto.Encode(encoded, chunk);
        chunk.Release();

        // Both responses carry the event as field 1: the same bytes must parse as either.
        var start = StartResponse.Parser.ParseFrom(encoded).Event.Data;
        var connect = ConnectResponse.Parser.ParseFrom(encoded).Event.Data;
        Assert.Equal(start, connect);
        Assert.Equal(kind switch
        {
            OutputKind.Stdout => ProcessEvent.Types.DataEvent.OutputOneofCase.Stdout,
            OutputKind.Stderr => ProcessEvent.Types.DataEvent.OutputOneofCase.Stderr,
            _ => ProcessEvent.Types.DataEvent.OutputOneofCase.Pty,
        }, start.OutputCase);
        var got = kind switch
        {
            OutputKind.Stdout => start.Stdout,
            OutputKind.Stderr => start.Stderr,
            _ => start.Pty,
        };
        Assert.Equal(bytes, got.ToByteArray());
        // Exactly what Google.Protobuf itself writes for the message.
        Assert.Equal(new StartResponse { Event = new ProcessEvent { Data = start } }.ToByteArray(), encoded);
    }

    [Fact]
    public void The_large_block_pool_lends_64_KiB_blocks_and_keeps_a_bounded_number_of_returned_ones()
    {
        using var pool = new LargeBlockMemoryPool();
        var blocks = Enumerable.Range(0, LargeBlockMemoryPool.MaxIdleBlocks + 10).Select(_ => pool.Rent()).ToList();
        Assert.All(blocks, b => Assert.Equal(LargeBlockMemoryPool.BlockSize, b.Memory.Length));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(LargeBlockMemoryPool.BlockSize + 1));
        var first = blocks[0];
        foreach (var b in blocks)
        {
            b.Dispose();
        }
        first.Dispose(); // a second return is ignored

        var again = Enumerable.Range(0, LargeBlockMemoryPool.MaxIdleBlocks + 10).Select(_ => pool.Rent()).ToList();
        var reused = again.Count(a => blocks.Contains(a));
        Assert.Equal(LargeBlockMemoryPool.MaxIdleBlocks, reused);
    }

    [Theory]
    [InlineData(ConnectEncoding.Proto)]
    [InlineData(ConnectEncoding.Json)]
    public async Task Output_that_floods_in_small_writes_on_both_streams_arrives_byte_for_byte(ConnectEncoding encoding)
    {
        using var cts = Calls.Timeout(120);
        var dir = Directory.CreateTempSubdirectory("paddock-output-test-");
        try
        {
            // Binary data of an odd length, written 4 KiB at a time on stdout and 1000 bytes at a time on stderr:
            // many small writes in quick succession, which the pump gathers into larger events.
            var outFile = Path.Combine(dir.FullName, "out.bin");
            var errFile = Path.Combine(dir.FullName, "err.bin");
            var outBytes = new byte[(3 << 20) + 1];
            var errBytes = new byte[(1 << 20) + 2];
            new Random(1).NextBytes(outBytes);
            new Random(2).NextBytes(errBytes);
            await File.WriteAllBytesAsync(outFile, outBytes, cts.Token);
            await File.WriteAllBytesAsync(errFile, errBytes, cts.Token);

            var script = $"dd if={outFile} bs=4096 status=none & dd if={errFile} bs=1000 status=none >&2; wait";
            await using var run = await ProcessRun.StartAsync(new ConnectClient(_fixture.Agent.Http, encoding), Calls.Shell(script), cts.Token);
            var end = await run.WaitEndAsync(cts.Token);

            Assert.Equal(0, end.ExitCode);
            Assert.True(outBytes.AsSpan().SequenceEqual(run.Stdout.ToArray()), $"stdout differs: {run.Stdout.Length} bytes, expected {outBytes.Length}");
            Assert.True(errBytes.AsSpan().SequenceEqual(run.Stderr.ToArray()), $"stderr differs: {run.Stderr.Length} bytes, expected {errBytes.Length}");
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static OutputChunk Chunk(string text)
    {
        var chunk = OutputChunk.Rent(OutputKind.Stdout, 64);
        chunk.Length = Encoding.ASCII.GetBytes(text, chunk.Buffer.Span);
        return chunk;
    }
}
