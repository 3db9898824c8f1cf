using System.Text;
using System.Text.Json;
using Paddock.Interpreter.Jupyter;

namespace Paddock.Interpreter.Tests;

public sealed class JupyterMessageTests
{
    [Fact]
    public void Signature_is_hmac_sha256_of_the_four_parts_in_order_as_lowercase_hex()
    {
        // RFC 4231 test case 2 (key "Jefe"), its data split across the four parts: the signature covers their
        // concatenation, as jupyter_client's Session.sign updates one HMAC with each part.
        var signer = new MessageSigner("Jefe"u8.ToArray());
        var signature = signer.Sign("what do "u8, "ya want "u8, "for "u8, "nothing?"u8);
        Assert.Equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", Encoding.ASCII.GetString(signature));
    }

    [Fact]
    public void Verify_rejects_a_changed_part_and_an_uppercase_signature()
    {
        var signer = new MessageSigner("key"u8.ToArray());
        var good = signer.Sign("{\"a\":1}"u8, "{}"u8, "{}"u8, "{\"code\":\"1\"}"u8);
        Assert.True(signer.Verify(good, "{\"a\":1}"u8, "{}"u8, "{}"u8, "{\"code\":\"1\"}"u8));
        Assert.False(signer.Verify(good, "{\"a\":1}"u8, "{}"u8, "{}"u8, "{\"code\":\"2\"}"u8));
        Assert.False(signer.Verify(Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(good).ToUpperInvariant()), "{\"a\":1}"u8, "{}"u8, "{}"u8, "{\"code\":\"1\"}"u8));
    }

    [Fact]
    public void A_built_request_parses_back_with_its_type_id_and_content()
    {
        var signer = MessageSigner.NewRandom();
        var frames = JupyterMessage.Build(signer, "session-1", "id-1", "execute_request", JupyterMessage.ExecuteRequestContent("print(1)", silent: false), DateTimeOffset.UnixEpoch);

        Assert.Equal("<IDS|MSG>", Encoding.ASCII.GetString(frames[0]));
        using var header = JsonDocument.Parse(frames[2]);
        Assert.Equal("5.3", header.RootElement.GetProperty("version").GetString());
        Assert.Equal("session-1", header.RootElement.GetProperty("session").GetString());
        Assert.Equal("1970-01-01T00:00:00.000000Z", header.RootElement.GetProperty("date").GetString());

        var parsed = JupyterMessage.Parse(signer, frames, out var error);
        Assert.Null(error);
        Assert.NotNull(parsed);
        Assert.Equal("execute_request", parsed.MsgType);
        Assert.Equal("id-1", parsed.MsgId);
        Assert.Null(parsed.ParentMsgId);
        Assert.Equal("print(1)", parsed.Content.RootElement.GetProperty("code").GetString());
        Assert.False(parsed.Content.RootElement.GetProperty("silent").GetBoolean());
        Assert.True(parsed.Content.RootElement.GetProperty("store_history").GetBoolean());
    }

    [Fact]
    public void A_received_message_with_routing_frames_and_buffers_parses_with_its_parent()
    {
        var signer = new MessageSigner("k"u8.ToArray());
        var header = "{\"msg_id\":\"m2\",\"msg_type\":\"stream\",\"date\":\"2026-01-01T00:00:00Z\"}"u8.ToArray();
        var parent = "{\"msg_id\":\"m1\",\"msg_type\":\"execute_request\"}"u8.ToArray();
        var metadata = "{}"u8.ToArray();
        var content = "{\"name\":\"stdout\",\"text\":\"hi\\n\"}"u8.ToArray();
        byte[][] frames = ["kernel.abc.stream"u8.ToArray(), "<IDS|MSG>"u8.ToArray(), signer.Sign(header, parent, metadata, content), header, parent, metadata, content, [1, 2, 3]];

        var parsed = JupyterMessage.Parse(signer, frames, out var error);

        Assert.Null(error);
        Assert.Equal("stream", parsed!.MsgType);
        Assert.Equal("m1", parsed.ParentMsgId);
        Assert.Equal("2026-01-01T00:00:00Z", parsed.Date);
        Assert.Equal("hi\n", parsed.Content.RootElement.GetProperty("text").GetString());
    }

    [Fact]
    public void Parse_refuses_a_wrong_signature_a_missing_delimiter_and_too_few_frames()
    {
        var signer = new MessageSigner("k"u8.ToArray());
        var other = new MessageSigner("other"u8.ToArray());
        var frames = JupyterMessage.Build(other, "s", "id", "status", "{}"u8.ToArray(), DateTimeOffset.UtcNow);

        Assert.Null(JupyterMessage.Parse(signer, frames, out var signatureError));
        Assert.Contains("signature", signatureError);
        Assert.Null(JupyterMessage.Parse(signer, frames.Skip(1).ToList(), out var delimiterError));
        Assert.Contains("delimiter", delimiterError);
        Assert.Null(JupyterMessage.Parse(signer, frames.Take(4).ToList(), out var shortError));
        Assert.Contains("too few", shortError);
    }

    [Fact]
    public void Connection_file_is_private_and_has_five_distinct_ports()
    {
        var info = KernelConnectionInfo.WithFreePorts("secret");
        var path = Path.Combine(Path.GetTempPath(), $"paddock-interp-test-{Guid.NewGuid():N}.json");
        try
        {
            info.Write(path);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            using var doc = JsonDocument.Parse(File.ReadAllBytes(path));
            var ports = new[] { "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port" }.Select(p => doc.RootElement.GetProperty(p).GetInt32()).ToList();
            Assert.Equal(5, ports.Distinct().Count());
            Assert.All(ports, p => Assert.InRange(p, 1, 65535));
            Assert.Equal("hmac-sha256", doc.RootElement.GetProperty("signature_scheme").GetString());
            Assert.Equal("secret", doc.RootElement.GetProperty("key").GetString());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
