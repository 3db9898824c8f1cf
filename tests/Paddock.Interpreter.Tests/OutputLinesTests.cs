using System.Text;
using System.Text.Json;
using Paddock.Interpreter.Http;

namespace Paddock.Interpreter.Tests;

public sealed class OutputLinesTests
{
    private static JsonElement ParseLine(byte[] line)
    {
        Assert.Equal((byte)'\n', line[^1]);
        Assert.DoesNotContain((byte)'\n', line[..^1]);
        return JsonDocument.Parse(line).RootElement.Clone();
    }

    [Fact]
    public void A_mime_bundle_maps_to_e2b_fields_with_unknown_types_in_extra()
    {
        using var data = JsonDocument.Parse("""
            {"text/plain": "'quoted'", "image/png": "iVBOR", "text/html": "<b>x</b>", "e2b/chart": {"type": "bar", "elements": []},
             "e2b/data": {"a": [1, 2]}, "application/json": {"k": 1}, "application/vnd.custom": "v"}
            """);
        var line = ParseLine(OutputLines.Result(data.RootElement, isMainResult: true));

        Assert.Equal("result", line.GetProperty("type").GetString());
        Assert.Equal("quoted", line.GetProperty("text").GetString());
        Assert.Equal("iVBOR", line.GetProperty("png").GetString());
        Assert.Equal("<b>x</b>", line.GetProperty("html").GetString());
        Assert.Equal("bar", line.GetProperty("chart").GetProperty("type").GetString());
        Assert.Equal(2, line.GetProperty("data").GetProperty("a")[1].GetInt32());
        Assert.Equal(1, line.GetProperty("json").GetProperty("k").GetInt32());
        Assert.Equal("v", line.GetProperty("extra").GetProperty("application/vnd.custom").GetString());
        Assert.True(line.GetProperty("is_main_result").GetBoolean());
        Assert.False(line.TryGetProperty("image/png", out _));
    }

    [Fact]
    public void Streams_errors_counts_and_markers_are_one_json_line_each()
    {
        var stdout = ParseLine(OutputLines.Stream("stdout", "a\nb\n", "2026-01-01T00:00:00Z"));
        Assert.Equal("stdout", stdout.GetProperty("type").GetString());
        Assert.Equal("a\nb\n", stdout.GetProperty("text").GetString());
        Assert.Equal("2026-01-01T00:00:00Z", stdout.GetProperty("timestamp").GetString());

        var error = ParseLine(OutputLines.Error("ValueError", "bad <value>", "line 1\nline 2"));
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Equal("bad <value>", error.GetProperty("value").GetString());
        Assert.Equal("line 1\nline 2", error.GetProperty("traceback").GetString());

        Assert.Equal(7, ParseLine(OutputLines.ExecutionCount(7)).GetProperty("execution_count").GetInt32());
        Assert.Equal("end_of_execution", ParseLine(OutputLines.End).GetProperty("type").GetString());
        Assert.Equal("keepalive", ParseLine(OutputLines.Keepalive).GetProperty("type").GetString());
    }

    [Theory]
    [InlineData("'abc'", "abc")]
    [InlineData("\"abc\"", "abc")]
    [InlineData("'", "'")]
    [InlineData("42", "42")]
    [InlineData("'a' + 'b'", "a' + 'b")]
    public void String_results_lose_their_quotes_as_e2b_shows_them(string text, string shown) =>
        Assert.Equal(shown, OutputLines.StripQuotes(text));

    [Theory]
    [InlineData("a\nb\n")]
    [InlineData("tab\t \"quoted\" back\\slash \u0001 é \u2028 <html> 😀")]
    [InlineData("")]
    public void A_kernels_stream_text_is_copied_into_one_line_that_reads_back_the_same(string text)
    {
        using var message = JsonDocument.Parse(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["name"] = "stdout", ["text"] = text }));
        var line = ParseLine(OutputLines.Stream("stdout", message.RootElement.GetProperty("text"), "2026-01-01T00:00:00Z"));
        Assert.Equal("stdout", line.GetProperty("type").GetString());
        Assert.Equal(text, line.GetProperty("text").GetString());
        Assert.Equal("2026-01-01T00:00:00Z", line.GetProperty("timestamp").GetString());
        Assert.Equal(["type", "text", "timestamp"], line.EnumerateObject().Select(p => p.Name));
    }

    [Fact]
    public void Html_and_non_ascii_are_written_as_they_are()
    {
        var line = Encoding.UTF8.GetString(OutputLines.Stream("stdout", "<é>", null));
        Assert.Contains("<é>", line);
    }
}
