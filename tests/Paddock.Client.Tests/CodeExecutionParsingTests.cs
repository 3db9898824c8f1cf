using Paddock.Client;

namespace Paddock.Client.Tests;

/// <summary>
/// SandboxCode's reading of /execute's NDJSON body, on lines as paddock-interp writes them (the server itself is
/// driven by the official SDK in tests/e2b-sdk/daemon/code-interpreter.test.mjs).
/// </summary>
public sealed class CodeExecutionParsingTests
{
    [Fact]
    public async Task A_stream_becomes_an_execution_with_typed_results_and_callbacks_in_order()
    {
        const string body = """
            {"type":"number_of_executions","execution_count":3}
            {"type":"stdout","text":"hi\n","timestamp":"2026-01-01T00:00:00Z"}
            {"type":"keepalive"}
            {"type":"stderr","text":"warn\n"}
            {"type":"result","png":"iVBOR","chart":{"type":"bar","elements":[]},"text":"<Figure>","extra":{"application/x-custom":"v"},"is_main_result":false}
            {"type":"result","text":"42","data":{"a":[1]},"is_main_result":true}
            {"type":"error","name":"ValueError","value":"bad","traceback":"tb"}
            {"type":"end_of_execution"}
            """;
        var seen = new List<string>();
        var callbacks = new ExecutionCallbacks
        {
            OnStdout = s => seen.Add("out:" + s),
            OnStderr = s => seen.Add("err:" + s),
            OnResult = r => seen.Add("result:" + r.Text),
            OnError = e => seen.Add("error:" + e.Name),
        };

        var execution = await SandboxCode.ReadExecutionAsync(new StringReader(body), callbacks, CancellationToken.None);

        Assert.Equal(["out:hi\n", "err:warn\n", "result:<Figure>", "result:42", "error:ValueError"], seen);
        Assert.Equal(3, execution.ExecutionCount);
        Assert.Equal("42", execution.Text);
        Assert.Equal("bar", execution.Results[0].Chart!.Value.GetProperty("type").GetString());
        Assert.Equal("v", execution.Results[0].Extra["application/x-custom"].GetString());
        Assert.Equal(1, execution.Results[1].Data!.Value.GetProperty("a")[0].GetInt32());
        Assert.Equal(new ExecutionError("ValueError", "bad", "tb"), execution.Error);
    }

    [Fact]
    public async Task A_stream_cut_before_its_end_marker_is_an_error()
    {
        var error = await Assert.ThrowsAsync<SandboxException>(() =>
            SandboxCode.ReadExecutionAsync(new StringReader("{\"type\":\"stdout\",\"text\":\"x\"}\n"), null, CancellationToken.None));
        Assert.Contains("ended before the end of the execution", error.Message);
    }
}
