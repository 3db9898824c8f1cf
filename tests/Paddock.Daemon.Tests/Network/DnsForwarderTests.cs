using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Paddock.Daemon.Networking;
using Paddock.Daemon.Tests.Runtimes;

namespace Paddock.Daemon.Tests.Network;

/// <summary>
/// The sandboxes' DNS forwarder in-process, on loopback: 127.0.0.1 plays a sandbox with a domain allowlist, and a
/// stub upstream on loopback answers every A question with 192.0.2.1 (a documentation address nobody connects to).
/// The fuzz test sends what a hostile sandbox could (issue 21): random bytes, mutated queries, huge names,
/// compression pointers and loops, lying counts, wrong opcodes, responses, EDNS oddities, and over TCP partial,
/// empty, oversized and stalled frames. Fixed seed, bounded count; every answer must come within its timeout, no
/// exception may leave the forwarder, and it must answer a good question correctly between and after.
/// </summary>
public sealed class DnsForwarderTests : IAsyncLifetime
{
    private const int Seed = 20261206;
    private const int Cases = 3000;
    private static readonly IPAddress Sandbox = IPAddress.Loopback;

    private readonly StubUpstream _upstream = new();
    private DnsForwarder _forwarder = null!;
    private EgressPolicy _policy = EgressPolicy.From(false, ["allowed.test", "*.wild.test"], null);

    public Task InitializeAsync()
    {
        _upstream.Start();
        var resolver = new DaemonResolver([_upstream.EndPoint], TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(60));
        _forwarder = new DnsForwarder(IPAddress.Loopback, 0, address => address.Equals(Sandbox)
            ? new SandboxLink("fuzz", 1, "none", IPAddress.Loopback, IPAddress.Loopback, _policy) : null, resolver, NullLogger.Instance);
        _forwarder.Start();
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        await _forwarder.DisposeAsync();
        _upstream.Dispose();
    }

    [Fact]
    public async Task Answers_follow_the_policy_and_only_allowed_questions_leave()
    {
        Assert.Equal((0, "192.0.2.1"), Read(await AskUdpAsync(Query("allowed.test"))));
        Assert.Equal((0, "192.0.2.1"), Read(await AskUdpAsync(Query("API.Wild.Test"))));
        Assert.Equal((3, ""), Read(await AskUdpAsync(Query("evil.test"))));
        Assert.Equal((3, ""), Read(await AskTcpAsync(Query("secret.evil.test"))));
        Assert.Equal((0, "192.0.2.1"), Read(await AskTcpAsync(Query("allowed.test"))));
        Assert.DoesNotContain(_upstream.Questions, q => q.Contains("evil", StringComparison.Ordinal));

        _policy = EgressPolicy.DenyAll;
        Assert.Equal((5, ""), Read(await AskUdpAsync(Query("allowed.test"))));
        _policy = EgressPolicy.AllowAll;
        Assert.Equal((0, "192.0.2.1"), Read(await AskUdpAsync(Query("evil.test"))));
        // What goes upstream is the forwarder's own query with only the question: the sandbox's id, flags and
        // additional records stay behind.
        Assert.Equal("evil.test", _upstream.Questions.Last());
        Assert.True(_upstream.LastQueryHadOnlyQuestionAndOpt);
    }

    [Fact]
    public async Task The_proxys_lookup_follows_aliases_keeps_answers_for_their_TTL_and_reports_failures()
    {
        var resolver = new DaemonResolver([_upstream.EndPoint], TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(60));

        Assert.Equal([IPAddress.Parse("192.0.2.1")], (await resolver.LookupAsync("allowed.test", CancellationToken.None)).Addresses);
        var asked = _upstream.Questions.Count;
        Assert.Equal([IPAddress.Parse("192.0.2.1")], (await resolver.LookupAsync("allowed.test", CancellationToken.None)).Addresses);
        Assert.Equal(asked, _upstream.Questions.Count); // from the cache: TTL 30 s

        // alias.test is a CNAME of target.test, whose A record comes in the same answer.
        Assert.Equal([IPAddress.Parse("192.0.2.7")], (await resolver.LookupAsync("alias.test", CancellationToken.None)).Addresses);
        var missing = await resolver.LookupAsync("nothing.test", CancellationToken.None);
        Assert.Empty(missing.Addresses);
        Assert.Contains("NxDomain", missing.Failure, StringComparison.Ordinal);
        var silent = await new DaemonResolver([new IPEndPoint(IPAddress.Loopback, 9)], TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(60))
            .LookupAsync("allowed.test", CancellationToken.None);
        Assert.Equal("no resolver answered", silent.Failure);
    }

    [Fact]
    public async Task An_answer_larger_than_the_client_can_take_over_UDP_is_truncated_and_complete_over_TCP()
    {
        _policy = EgressPolicy.AllowAll;
        var udp = await AskUdpAsync(Query("big.test"));
        Assert.NotNull(udp);
        Assert.True((udp![2] & 0x02) != 0, "TC bit");
        Assert.Equal(0, BinaryPrimitives.ReadUInt16BigEndian(udp.AsSpan(6)));
        var tcp = await AskTcpAsync(Query("big.test"));
        Assert.Equal(StubUpstream.BigAnswers, BinaryPrimitives.ReadUInt16BigEndian(tcp!.AsSpan(6)));
    }

    [Fact]
    public async Task Hostile_input_gets_no_crash_no_hang_and_good_questions_are_still_answered()
    {
        var random = new Random(Seed);
        var good = Query("allowed.test");
        for (var i = 0; i < Cases; i++)
        {
            var message = Hostile(random, good);
            // Straight into the handler: any exception fails the test here, with the input in hand.
            var answer = await _forwarder.AnswerAsync(message, Sandbox, overTcp: random.Next(2) == 0, CancellationToken.None)
                .WaitAsync(TimeSpan.FromSeconds(10));
            if (answer is not null)
            {
                Assert.True(answer.Length >= 12 && (answer[2] & 0x80) != 0 && answer.AsSpan(0, 2).SequenceEqual(message.AsSpan(0, 2)),
                    $"case {i}: not a response to {Convert.ToHexString(message)}");
            }
            // And through the socket, so the receive loop meets it too.
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
            await socket.SendToAsync(message, new IPEndPoint(IPAddress.Loopback, _forwarder.Port));
            if (i % 250 == 0)
            {
                Assert.Equal((0, "192.0.2.1"), Read(await AskUdpAsync(good)));
            }
        }

        // TCP: frames that lie about their length, empty frames, garbage, a stalled client that keeps its slot.
        using var stalled = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await stalled.ConnectAsync(IPAddress.Loopback, _forwarder.Port);
        await stalled.SendAsync(new byte[] { 0x00 });
        for (var i = 0; i < 200; i++)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, _forwarder.Port).WaitAsync(TimeSpan.FromSeconds(10));
            var body = Hostile(random, good);
            var declared = random.Next(4) switch { 0 => 0, 1 => ushort.MaxValue, 2 => body.Length + random.Next(1, 50), _ => body.Length };
            var frame = new byte[2 + body.Length];
            BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)declared);
            body.CopyTo(frame, 2);
            await socket.SendAsync(frame.AsMemory(0, random.Next(1, frame.Length + 1)));
            socket.Shutdown(SocketShutdown.Send);
            using var drain = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            var buffer = new byte[70000];
            try
            {
                while (await socket.ReceiveAsync(buffer, drain.Token) > 0)
                {
                }
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                // The forwarder closed with bytes of ours unread (a frame it gave up on): a reset, also an end.
            }
        }

        Assert.Equal((0, "192.0.2.1"), Read(await AskUdpAsync(good)));
        Assert.Equal((0, "192.0.2.1"), Read(await AskTcpAsync(good)));
        Assert.Equal((3, ""), Read(await AskUdpAsync(Query("evil.test"))));
    }

    /// <summary>One hostile message, built from <paramref name="good"/> or from nothing.</summary>
    private static byte[] Hostile(Random random, byte[] good)
    {
        var id = new byte[2];
        random.NextBytes(id);
        byte[] message;
        switch (random.Next(12))
        {
            case 0: // random bytes, any length up to a large datagram
                message = new byte[random.Next(0, 1500)];
                random.NextBytes(message);
                break;
            case 1: // a good query with bytes flipped
                message = (byte[])good.Clone();
                for (var n = random.Next(1, 6); n > 0; n--)
                {
                    message[random.Next(message.Length)] ^= (byte)random.Next(1, 256);
                }
                break;
            case 2: // cut short anywhere
                message = good[..random.Next(0, good.Length)];
                break;
            case 3: // a huge name: many labels of 63 bytes (well over 255)
                message = Build(string.Join('.', Enumerable.Range(0, random.Next(4, 40)).Select(_ => new string('a', 63))));
                break;
            case 4: // a compression pointer to itself, or into the header, or out of the message
                message = [.. Header(1), 0xc0, (byte)random.Choose(12, 0, 2, 255), 0, 1, 0, 1];
                break;
            case 5: // a pointer chain that loops: label, pointer back to the label
                message = [.. Header(1), 3, (byte)'a', (byte)'b', (byte)'c', 0xc0, 12, 0, 1, 0, 1];
                break;
            case 6: // counts that lie
                message = (byte[])good.Clone();
                BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(4 + 2 * random.Next(4)), (ushort)random.Next(2, 65536));
                break;
            case 7: // another opcode, or a response
                message = (byte[])good.Clone();
                message[2] = (byte)(random.Next(2) == 0 ? (random.Next(1, 16) << 3) | 1 : 0x81);
                break;
            case 8: // EDNS with an absurd payload size, version or a long option
                message = [.. good[..^11], 0, 0, 41, (byte)random.Next(256), (byte)random.Next(256), 0, (byte)random.Next(256), 0, 0, 0, 8, 0, 12, 0, 4, 1, 2, 3, 4];
                break;
            case 9: // a name with bytes that are not host-name characters
                var label = new byte[random.Next(1, 64)];
                random.NextBytes(label);
                message = [.. Header(1), (byte)label.Length, .. label, 4, (byte)'t', (byte)'e', (byte)'s', (byte)'t', 0, 0, 1, 0, 1];
                break;
            case 10: // many additional records of garbage after a good question
                message = [.. good[..^11], .. Enumerable.Range(0, random.Next(1, 40)).SelectMany(_ => new byte[] { 0, 0, 16, 0, 1, 0, 0, 0, 0, 0, 2, 1, 0x41 })];
                BinaryPrimitives.WriteUInt16BigEndian(message.AsSpan(10), (ushort)random.Next(1, 60));
                break;
            default: // a reserved label type (0x40, 0x80), an empty label, a label longer than the message
                message = [.. Header(1), (byte)random.Choose(0x40, 0x41, 0x80, 0x3f), 1, 0, 0, 1];
                break;
        }
        if (message.Length >= 2)
        {
            id.CopyTo(message, 0);
        }
        return message;
    }

    private static byte[] Header(int questions) => [0, 0, 0x01, 0, 0, (byte)questions, 0, 0, 0, 0, 0, 0];

    private static byte[] Build(string name)
    {
        var bytes = new List<byte>(Header(1));
        foreach (var label in name.Split('.'))
        {
            bytes.Add((byte)label.Length);
            bytes.AddRange(Encoding.ASCII.GetBytes(label));
        }
        bytes.AddRange([0, 0, 1, 0, 1]);
        return bytes.ToArray();
    }

    /// <summary>An A question for <paramref name="name"/> as a stub resolver sends it, with an EDNS OPT record (11 bytes at the end).</summary>
    private static byte[] Query(string name)
    {
        var message = Build(name);
        message[0] = 0x4a;
        message[1] = 0x17;
        message[11] = 1;
        return [.. message, 0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0];
    }

    private async Task<byte[]?> AskUdpAsync(byte[] query)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        await socket.ConnectAsync(IPAddress.Loopback, _forwarder.Port);
        await socket.SendAsync(query);
        var buffer = new byte[65535];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var n = await socket.ReceiveAsync(buffer, timeout.Token);
        return buffer[..n];
    }

    private async Task<byte[]?> AskTcpAsync(byte[] query)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(IPAddress.Loopback, _forwarder.Port, timeout.Token);
        var frame = new byte[2 + query.Length];
        BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)query.Length);
        query.CopyTo(frame, 2);
        await socket.SendAsync(frame, timeout.Token);
        var length = new byte[2];
        Assert.True(await DaemonResolver.ReadExactlyAsync(socket, length, timeout.Token));
        var answer = new byte[BinaryPrimitives.ReadUInt16BigEndian(length)];
        Assert.True(await DaemonResolver.ReadExactlyAsync(socket, answer, timeout.Token));
        return answer;
    }

    /// <summary>The rcode and the first A record's address ("" when none) of an answer to <see cref="Query"/>.</summary>
    private static (int Rcode, string Address) Read(byte[]? answer)
    {
        Assert.NotNull(answer);
        Assert.Equal(0x4a17, BinaryPrimitives.ReadUInt16BigEndian(answer));
        var message = ARSoft.Tools.Net.Dns.DnsMessage.Parse(new ArraySegment<byte>(answer));
        var a = message.AnswerRecords.OfType<ARSoft.Tools.Net.Dns.ARecord>().FirstOrDefault();
        return (answer[3] & 0x0f, a?.Address.ToString() ?? "");
    }

    /// <summary>
    /// A resolver on loopback (UDP and TCP, one port) that answers every A question with 192.0.2.1, and
    /// "big.test" with 120 of them (over UDP's 1232 bytes); keeps each question's name.
    /// </summary>
    private sealed class StubUpstream : IDisposable
    {
        public const int BigAnswers = 120;
        private Socket _udp = new(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
        private Socket _tcp = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        private readonly CancellationTokenSource _stop = new();
        private readonly System.Collections.Concurrent.ConcurrentQueue<string> _questions = new();

        public IPEndPoint EndPoint { get; private set; } = null!;

        public IReadOnlyCollection<string> Questions => _questions;

        public bool LastQueryHadOnlyQuestionAndOpt { get; private set; }

        public void Start()
        {
            // The free UDP port may be taken for TCP by another process of the machine: a bounded number of fresh pairs
            // (a CI run failed once with "Address already in use" here).
            for (var attempt = 1; ; attempt++)
            {
                _udp.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                EndPoint = (IPEndPoint)_udp.LocalEndPoint!;
                try
                {
                    _tcp.Bind(EndPoint);
                    break;
                }
                catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse && attempt < 20)
                {
                    _udp.Dispose();
                    _tcp.Dispose();
                    _udp = new Socket(AddressFamily.InterNetwork, SocketType.Dgram, ProtocolType.Udp);
                    _tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                }
            }
            _tcp.Listen(16);
            _ = Task.Run(async () =>
            {
                var buffer = new byte[4096];
                while (!_stop.IsCancellationRequested)
                {
                    var r = await _udp.ReceiveFromAsync(buffer, new IPEndPoint(IPAddress.Any, 0), _stop.Token);
                    var answer = Answer(buffer[..r.ReceivedBytes]);
                    await _udp.SendToAsync(answer, r.RemoteEndPoint, _stop.Token);
                }
            });
            _ = Task.Run(async () =>
            {
                while (!_stop.IsCancellationRequested)
                {
                    using var client = await _tcp.AcceptAsync(_stop.Token);
                    var length = new byte[2];
                    await DaemonResolver.ReadExactlyAsync(client, length, _stop.Token);
                    var query = new byte[BinaryPrimitives.ReadUInt16BigEndian(length)];
                    await DaemonResolver.ReadExactlyAsync(client, query, _stop.Token);
                    var answer = Answer(query);
                    var frame = new byte[2 + answer.Length];
                    BinaryPrimitives.WriteUInt16BigEndian(frame, (ushort)answer.Length);
                    answer.CopyTo(frame, 2);
                    await client.SendAsync(frame, _stop.Token);
                }
            });
        }

        private byte[] Answer(byte[] query)
        {
            Assert.True(DnsWire.TryReadQuestion(query, out var question));
            _questions.Enqueue(question.Name ?? "?");
            // Header, one question, and exactly one additional record: the OPT of 11 bytes.
            LastQueryHadOnlyQuestionAndOpt = query.Length == 12 + question.Length + 11 && query[7] == 0 && query[9] == 0 && query[11] == 1;
            var count = question.Name == "big.test" ? BigAnswers : 1;
            var answer = new List<byte>(query.AsSpan(0, 12 + question.Length).ToArray());
            answer[2] = 0x81;
            answer[3] = 0x80;
            if (question.Name == "nothing.test")
            {
                answer[3] = 0x83; // NXDOMAIN
                answer[11] = 0;
                return answer.ToArray();
            }
            if (question.Name == "alias.test")
            {
                // alias.test CNAME target.test; target.test A 192.0.2.7 (the target's name written out, then pointed at)
                answer[7] = 2;
                answer[11] = 0;
                var target = answer.Count + 12;
                answer.AddRange([0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 30, 0, 13, 6, .. "target"u8.ToArray(), 4, .. "test"u8.ToArray(), 0]);
                answer.AddRange([0xc0, (byte)target, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 7]);
                return answer.ToArray();
            }
            answer[7] = (byte)count;
            answer[6] = (byte)(count >> 8);
            answer[11] = 0;
            for (var i = 0; i < count; i++)
            {
                answer.AddRange([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, (byte)(1 + i % 200)]);
            }
            return answer.ToArray();
        }

        public void Dispose()
        {
            _stop.Cancel();
            _udp.Dispose();
            _tcp.Dispose();
            _stop.Dispose();
        }
    }
}

internal static class RandomExtensions
{
    public static int Choose(this Random random, params int[] values) => values[random.Next(values.Length)];
}
