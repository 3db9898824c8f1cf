using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Paddock.Agent.Auth;
using Xunit.Abstractions;
using Paddock.Agent.Tests.Filesystem;
using static Paddock.Agent.Tests.Files.FileTransferTests;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Files;

/// <summary>
/// Large transfers, clients that leave half way, a full disk and signed URLs: each test starts its own agent, so
/// its memory and open files belong to that test alone.
/// </summary>
public sealed class FileStreamingTests
{
    private const long LargeSize = 64L * 1024 * 1024;
    private readonly ITestOutputHelper _output;

    public FileStreamingTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public async Task Large_files_stream_through_without_the_agent_holding_them_in_memory()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        using var transfer = new HttpClient { BaseAddress = agent.Http.BaseAddress, Timeout = TimeSpan.FromMinutes(3) };

        // Warm up both routes so JIT and pools are in place before the baseline.
        using (var r = await transfer.PostAsync(Url(dir["warm"]), Octet(new byte[1024 * 1024])))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        Assert.Equal(1024 * 1024, (await transfer.GetByteArrayAsync(Url(dir["warm"]))).Length);
        var baseline = PeakRssKiB(agent.Pid);

        var upload = new PatternStream(LargeSize, seed: 7);
        using (var content = new StreamContent(upload, 256 * 1024))
        {
            content.Headers.ContentType = new("application/octet-stream");
            content.Headers.ContentLength = LargeSize;
            using var response = await transfer.PostAsync(Url(dir["large.bin"]), content);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Equal(LargeSize, new FileInfo(dir["large.bin"]).Length);
        var expectedHash = upload.Hash();

        using (var response = await transfer.GetAsync(Url(dir["large.bin"]), HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(LargeSize, response.Content.Headers.ContentLength);
            await using var body = await response.Content.ReadAsStreamAsync();
            using var sha = SHA256.Create();
            var hash = await sha.ComputeHashAsync(body);
            Assert.Equal(expectedHash, hash);
        }

        var growthKiB = PeakRssKiB(agent.Pid) - baseline;
        _output.WriteLine($"agent peak RSS: {baseline} KiB after warm-up, grew by {growthKiB} KiB moving 64 MiB each way");
        // 64 MiB went each way; a copy held in memory would raise the peak by at least that. Allow 24 MiB for
        // buffers, pools and GC slack.
        Assert.True(growthKiB < 24 * 1024, $"the agent's peak RSS grew by {growthKiB} KiB while moving 64 MiB each way");
    }

    [Fact]
    public async Task A_client_leaving_mid_upload_leaves_the_target_untouched_and_nothing_open()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        await File.WriteAllTextAsync(dir["target.txt"], "old content");

        using (var client = new TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, agent.Port).WaitAsync(LongWait);
            var stream = client.GetStream();
            var head = $"POST {Url(dir["target.txt"])} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {64 * 1024 * 1024}\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head)).AsTask().WaitAsync(LongWait);
            await stream.WriteAsync(new byte[1024 * 1024]).AsTask().WaitAsync(LongWait);
            await stream.FlushAsync().WaitAsync(LongWait);
            await EventuallyAsync(() => Temps(dir).Length == 1, LongWait, () => "the upload's temporary file never appeared");
            Assert.Contains(OpenFiles(agent.Pid), f => f.StartsWith(dir.Path, StringComparison.Ordinal));
            client.Client.LingerState = new LingerOption(true, 0); // leave abruptly (RST)
        }

        await EventuallyAsync(
            () => Temps(dir).Length == 0 && !OpenFiles(agent.Pid).Any(f => f.StartsWith(dir.Path, StringComparison.Ordinal)),
            LongWait,
            () => $"temps: {string.Join(", ", Temps(dir))}; open: {string.Join(", ", OpenFiles(agent.Pid).Where(f => f.StartsWith(dir.Path, StringComparison.Ordinal)))}");
        Assert.Equal("old content", await File.ReadAllTextAsync(dir["target.txt"]));
        Assert.Equal(["target.txt"], Directory.GetFileSystemEntries(dir.Path).Select(Path.GetFileName));
        Assert.False(agent.HasExited);
    }

    [Fact]
    public async Task A_client_leaving_mid_download_closes_the_file()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        var path = dir["big.bin"];
        await using (var file = File.Create(path))
        {
            await new PatternStream(32L * 1024 * 1024, seed: 3).CopyToAsync(file);
        }

        using (var client = new TcpClient())
        {
            client.ReceiveBufferSize = 64 * 1024;
            await client.ConnectAsync(IPAddress.Loopback, agent.Port).WaitAsync(LongWait);
            var stream = client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {Url(path)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")).AsTask().WaitAsync(LongWait);
            var buffer = new byte[256 * 1024];
            var read = 0;
            while (read < buffer.Length)
            {
                var n = await stream.ReadAsync(buffer.AsMemory(read)).AsTask().WaitAsync(LongWait);
                Assert.True(n > 0, "the download ended early");
                read += n;
            }
            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(buffer, 0, 12), StringComparison.Ordinal);
            Assert.Contains(path, OpenFiles(agent.Pid));
            client.Client.LingerState = new LingerOption(true, 0);
        }

        await EventuallyAsync(() => !OpenFiles(agent.Pid).Contains(path), LongWait, () => "the agent still has the file open");
        Assert.False(agent.HasExited);
        // The agent still serves.
        Assert.Equal(32L * 1024 * 1024, (await agent.Http.GetByteArrayAsync(Url(path))).LongLength);
    }

    [Fact]
    public async Task A_full_disk_answers_507_and_leaves_nothing_behind()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var dir = new TempDir();
        var small = dir["small"];
        Directory.CreateDirectory(small);
        Assert.Equal(0, Run("mount", "-t", "tmpfs", "-o", "size=1m", "paddock-fs-test", small));
        try
        {
            using var response = await agent.Http.PostAsync(Url(Path.Combine(small, "too-big.bin")), Octet(new byte[3 * 1024 * 1024]));
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.InsufficientStorage, $"{(int)response.StatusCode}: {body}");
            Assert.Contains("\"code\":507", body, StringComparison.Ordinal);
            Assert.Contains("disk space", body, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFileSystemEntries(small));
        }
        finally
        {
            Assert.Equal(0, Run("umount", small));
        }
    }

    [Fact]
    public async Task With_an_access_token_files_need_the_token_or_a_valid_signature()
    {
        const string token = "s3cret-token";
        await using var agent = await AgentProcess.StartAsync("--access-token", token).WaitAsync(LongWait);
        using var dir = new TempDir();
        var path = dir["signed.txt"];
        var expiration = DateTimeOffset.UtcNow.AddMinutes(5).ToUnixTimeSeconds();

        string Signed(string operation, string user, long? exp) =>
            Url(path, user.Length > 0 ? user : null) + "&signature=" + Uri.EscapeDataString(AccessTokenCheck.Sign(path, operation, user, token, exp))
            + (exp is null ? "" : "&signature_expiration=" + exp);

        using (var r = await agent.Http.PostAsync(Url(path), Octet("x")))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        }
        Assert.False(File.Exists(path));

        using (var form = new MultipartFormDataContent { { new StringContent("signed upload"), "file" } })
        using (var r = await agent.Http.PostAsync(Signed("write", "root", expiration), form))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        Assert.Equal("signed upload", await agent.Http.GetStringAsync(Signed("read", "root", expiration)));
        Assert.Equal("signed upload", await agent.Http.GetStringAsync(Signed("read", "", null))); // the SDK signs an unset user as ""

        using (var r = await agent.Http.GetAsync(Signed("write", "root", expiration)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode); // a write signature does not allow reading
        }
        using (var r = await agent.Http.GetAsync(Signed("read", "root", DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds())))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, r.StatusCode);
        }
        using (var request = new HttpRequestMessage(HttpMethod.Get, Url(path)))
        {
            request.Headers.Add("X-Access-Token", token);
            using var r = await agent.Http.SendAsync(request);
            Assert.Equal("signed upload", await r.Content.ReadAsStringAsync());
        }
    }

    private static string[] Temps(TempDir dir) => Directory.GetFiles(dir.Path, ".paddock-upload-*");
}

/// <summary>A read-only stream of deterministic pseudo-random bytes that never exists in memory as a whole.</summary>
internal sealed class PatternStream : Stream
{
    private readonly long _length;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private ulong _state;
    private long _position;

    public PatternStream(long length, ulong seed)
    {
        _length = length;
        _state = seed * 0x9E3779B97F4A7C15UL + 1;
    }

    private byte[]? _final;

    /// <summary>SHA-256 of the bytes produced, once all were read (StreamContent disposes the stream after sending).</summary>
    public byte[] Hash() => _final ?? throw new InvalidOperationException("the stream was not read to its end");

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var n = (int)Math.Min(buffer.Length, _length - _position);
        for (var i = 0; i < n; i++)
        {
            // xorshift64: cheap and reproducible, so both ends can check the bytes.
            _state ^= _state << 13;
            _state ^= _state >> 7;
            _state ^= _state << 17;
            buffer[i] = (byte)_state;
        }
        _hash.AppendData(buffer[..n]);
        _position += n;
        if (_position == _length && _final is null)
        {
            _final = _hash.GetHashAndReset();
        }
        return n;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => ValueTask.FromResult(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.FromResult(Read(buffer, offset, count));

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => _length;

    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
        }
        base.Dispose(disposing);
    }
}
