namespace Paddock.Agent.Tests;

public sealed class HealthTests
{
    [Fact]
    public async Task Health_answers_204_without_a_token_even_when_one_is_required()
    {
        await using var agent = await AgentProcess.StartAsync("--access-token", "secret");
        using var response = await agent.Http.GetAsync("/health");
        Assert.Equal(System.Net.HttpStatusCode.NoContent, response.StatusCode);
    }

    [Fact]
    public async Task A_call_without_the_token_is_refused_with_401()
    {
        await using var agent = await AgentProcess.StartAsync("--access-token", "secret");
        using var content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json");
        using var response = await agent.Http.PostAsync("/process.Process/List", content);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Contains("unauthenticated", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }
}
