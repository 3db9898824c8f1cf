using System.Text;
using Paddock.Interpreter.Http;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Tests;

public sealed class RequestParsingTests
{
    private static ExecuteRequest Parse(string json) => ExecuteRequest.Parse(Encoding.UTF8.GetBytes(json));

    [Fact]
    public void An_execute_request_reads_code_context_language_and_env_vars()
    {
        var request = Parse("""{"code": "print(1)", "context_id": null, "language": "python", "env_vars": {"A": "1"}}""");
        Assert.Equal("print(1)", request.Code);
        Assert.Null(request.ContextId);
        Assert.Equal("python", request.Language);
        Assert.Equal("1", request.EnvVars!["A"]);
    }

    [Theory]
    [InlineData("""{"code": 1}""", "body.code must be a string, not a number")]
    [InlineData("""{"code": ["x"]}""", "body.code must be a string, not an array")]
    [InlineData("""{}""", "body.code is required")]
    [InlineData("""[1]""", "must be a JSON object, not an array")]
    [InlineData("""{"code": "1", "language": 3}""", "body.language must be a string")]
    [InlineData("""{"code": "1", "env_vars": {"A": 1}}""", "body.env_vars.A must be a string")]
    [InlineData("""{"code": "1", "env_vars": {"A B": "x"}}""", "not a valid environment variable name")]
    [InlineData("""{"code": """, "not valid JSON")]
    public void A_malformed_body_says_what_is_wrong(string json, string message)
    {
        var error = Assert.Throws<BadBodyException>(() => Parse(json));
        Assert.Contains(message, error.Message);
    }

    [Theory]
    [InlineData(null, "python")]
    [InlineData(" Python ", "python")]
    [InlineData("js", "javascript")]
    [InlineData("JavaScript", "javascript")]
    [InlineData("sh", "bash")]
    [InlineData("cobol", null)]
    [InlineData("ts", "typescript")]
    [InlineData(" TypeScript", "typescript")]
    [InlineData("r", null)]
    public void Languages_normalize_as_e2b_spells_them(string? language, string? normalized) =>
        Assert.Equal(normalized, KernelSpec.Normalize(language));

    [Fact]
    public void An_empty_create_context_body_means_the_defaults()
    {
        var request = CreateContextRequest.Parse(""u8);
        Assert.Null(request.Language);
        Assert.Null(request.Cwd);
        Assert.Equal("/tmp", CreateContextRequest.Parse("""{"cwd": "/tmp"}"""u8).Cwd);
    }
}
