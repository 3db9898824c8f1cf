using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Paddock.Agent.Files;

namespace Paddock.Agent.Tests.Files;

/// <summary>
/// The multipart reader against bodies fed in pieces of every size, so that delimiters, CRLFs and headers fall across
/// reads and segments at every offset.
/// </summary>
public sealed class MultipartBodyTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private const string Boundary = "----formdata-undici-0123456789";

    [Fact]
    public void IndexOf_finds_the_first_occurrence_wherever_segments_split_it()
    {
        var value = "\r\n--b0undary"u8.ToArray();
        var random = new Random(19);
        for (var trial = 0; trial < 300; trial++)
        {
            // Data full of near misses (CR, LF, dashes and partial delimiters), and sometimes the delimiter itself.
            var data = new byte[random.Next(0, 200)];
            for (var i = 0; i < data.Length; i++)
            {
                data[i] = random.Next(4) switch
                {
                    0 => (byte)'\r',
                    1 => (byte)'\n',
                    2 => (byte)'-',
                    _ => value[random.Next(value.Length)],
                };
            }
            if (data.Length > value.Length && random.Next(2) == 0)
            {
                value.CopyTo(data, random.Next(data.Length - value.Length + 1));
            }
            var expected = data.AsSpan().IndexOf(value);
            var sequence = Segments(data, () => random.Next(1, 20));
            Assert.Equal(expected, MultipartBody.IndexOf(sequence, value));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(17)]
    [InlineData(4096)]
    public async Task Parts_come_out_whole_whatever_the_size_of_each_read(int piece)
    {
        var first = RandomBytes(5000, seed: piece);
        // A part whose data holds what looks like the start of a delimiter, and CRLF "--" without the boundary.
        var second = Encoding.ASCII.GetBytes($"a\r\n--{Boundary[..10]}x\r\n--\r\n-{Boundary}\r\nz");
        var body = Concat(
            "preamble to ignore\r\n"u8.ToArray(),
            Encoding.ASCII.GetBytes($"--{Boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"),
            first,
            Encoding.ASCII.GetBytes($"\r\n--{Boundary} \t\r\ncontent-disposition: form-data; name=\"file\"; filename=\"b.txt\"\r\n\r\n"),
            second,
            Encoding.ASCII.GetBytes($"\r\n--{Boundary}\r\n\r\n"),
            Encoding.ASCII.GetBytes($"\r\n--{Boundary}--\r\nepilogue to ignore"));

        var parts = await ReadAllAsync(body, piece).WaitAsync(Wait);

        Assert.Equal(3, parts.Count);
        Assert.Equal("form-data; name=\"file\"; filename=\"a.bin\"", parts[0].Headers["Content-Disposition"]);
        Assert.Equal("application/octet-stream", parts[0].Headers["content-type"]);
        Assert.Equal(first, parts[0].Data);
        Assert.Equal("form-data; name=\"file\"; filename=\"b.txt\"", parts[1].Headers["Content-Disposition"]);
        Assert.Equal(second, parts[1].Data);
        Assert.Empty(parts[2].Headers);
        Assert.Empty(parts[2].Data);
    }

    [Fact]
    public async Task A_part_left_unread_is_skipped_to_the_next()
    {
        var body = Encoding.ASCII.GetBytes(
            $"--{Boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nskip me\r\n" +
            $"--{Boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f\"\r\n\r\nkeep me\r\n--{Boundary}--");
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(body);
        await pipe.Writer.CompleteAsync();
        var reader = new MultipartBody(pipe.Reader, Boundary);

        var note = await reader.ReadNextPartAsync(CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal("form-data; name=\"note\"", note!["Content-Disposition"]);
        var file = await reader.ReadNextPartAsync(CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal("form-data; name=\"file\"; filename=\"f\"", file!["Content-Disposition"]);
        var data = new List<byte>();
        await reader.ReadPartDataAsync(s => data.AddRange(s.ToArray()), CancellationToken.None).AsTask().WaitAsync(Wait);
        Assert.Equal("keep me"u8.ToArray(), data.ToArray());
        Assert.Null(await reader.ReadNextPartAsync(CancellationToken.None).AsTask().WaitAsync(Wait));
    }

    [Theory]
    [InlineData("no delimiter at all")]
    [InlineData("--B\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nno closing boundary")]
    [InlineData("--B\r\nContent-Disposition: form-data; name=\"file\"\r\n")]
    [InlineData("--Bjunk\r\n\r\ndata\r\n--B--")]
    [InlineData("--B\r\nno colon here\r\n\r\ndata\r\n--B--")]
    public async Task A_malformed_or_truncated_body_is_invalid_data(string text)
    {
        var pipe = new Pipe();
        await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes(text));
        await pipe.Writer.CompleteAsync();
        var reader = new MultipartBody(pipe.Reader, "B");

        await Assert.ThrowsAsync<InvalidDataException>(async () =>
        {
            // Bounded: a body of a few parts at most.
            for (var i = 0; i < 10 && await reader.ReadNextPartAsync(CancellationToken.None) is not null; i++)
            {
                await reader.ReadPartDataAsync(static _ => { }, CancellationToken.None);
            }
        }).WaitAsync(Wait);
    }

    [Fact]
    public async Task Headers_over_the_limit_are_refused()
    {
        var pipe = new Pipe();
        var writing = Task.Run(async () =>
        {
            await pipe.Writer.WriteAsync(Encoding.ASCII.GetBytes($"--B\r\nX-Long: {new string('x', MultipartBody.HeadersLengthLimit + 10)}\r\n\r\n"));
            await pipe.Writer.CompleteAsync();
        });
        var reader = new MultipartBody(pipe.Reader, "B");

        await Assert.ThrowsAsync<InvalidDataException>(async () => await reader.ReadNextPartAsync(CancellationToken.None)).WaitAsync(Wait);
        await writing.WaitAsync(Wait);
    }

    private static async Task<List<(Dictionary<string, string> Headers, byte[] Data)>> ReadAllAsync(byte[] body, int piece)
    {
        var pipe = new Pipe(new PipeOptions(minimumSegmentSize: Math.Max(piece, 1), pauseWriterThreshold: 0));
        var writing = Task.Run(async () =>
        {
            for (var at = 0; at < body.Length; at += piece)
            {
                await pipe.Writer.WriteAsync(body.AsMemory(at, Math.Min(piece, body.Length - at)));
            }
            await pipe.Writer.CompleteAsync();
        });
        var reader = new MultipartBody(pipe.Reader, Boundary);
        var parts = new List<(Dictionary<string, string>, byte[])>();
        // Bounded: the bodies here have three parts.
        for (var i = 0; i < 10 && await reader.ReadNextPartAsync(CancellationToken.None) is { } headers; i++)
        {
            var data = new List<byte>();
            await reader.ReadPartDataAsync(s => data.AddRange(s.ToArray()), CancellationToken.None);
            parts.Add((headers, data.ToArray()));
        }
        await writing;
        return parts;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static byte[] Concat(params byte[][] pieces) => pieces.SelectMany(p => p).ToArray();

    /// <summary>A sequence of the bytes in segments of the sizes <paramref name="size"/> gives.</summary>
    private static ReadOnlySequence<byte> Segments(byte[] data, Func<int> size)
    {
        if (data.Length == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }
        Segment? first = null, last = null;
        for (var at = 0; at < data.Length;)
        {
            var n = Math.Min(size(), data.Length - at);
            var segment = new Segment(data.AsMemory(at, n));
            if (last is null)
            {
                first = segment;
            }
            else
            {
                last.Append(segment);
            }
            last = segment;
            at += n;
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory)
        {
            Memory = memory;
        }

        public void Append(Segment next)
        {
            next.RunningIndex = RunningIndex + Memory.Length;
            Next = next;
        }
    }
}
