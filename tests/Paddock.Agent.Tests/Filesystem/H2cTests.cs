using System.Net;
using Paddock.Envd.Filesystem;
using static Paddock.Agent.Tests.Filesystem.FsTestSupport;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>
/// The filesystem service and /files over h2c (HTTP/2 by prior knowledge), which the agent serves beside HTTP/1.1:
/// a cancelled HTTP/2 stream must end a watch as a closed connection does.
/// </summary>
public sealed class H2cTests
{
    private static HttpClient H2c(AgentProcess agent) => new()
    {
        BaseAddress = agent.Http.BaseAddress,
        DefaultRequestVersion = HttpVersion.Version20,
        DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        Timeout = LongWait,
    };

    [Fact]
    public async Task Calls_streams_and_transfers_work_over_h2c_and_a_cancelled_watch_frees_its_fd()
    {
        await using var agent = await AgentProcess.StartAsync().WaitAsync(LongWait);
        using var http = H2c(agent);
        using var dir = new TempDir();
        var client = new FsConnectClient(http, json: false);

        using (var upload = await http.PostAsync(FileTransferUrl(dir["h2.txt"]), OctetContent("over h2c")))
        {
            Assert.Equal(HttpVersion.Version20, upload.Version);
            Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        }
        using (var download = await http.GetAsync(FileTransferUrl(dir["h2.txt"])))
        {
            Assert.Equal(HttpVersion.Version20, download.Version);
            Assert.Equal("over h2c", await download.Content.ReadAsStringAsync());
        }
        Assert.Equal(8, (await client.CallAsync<StatResponse>("Stat", new StatRequest { Path = dir["h2.txt"] })).Entry.Size);

        var before = InotifyCount(agent.Pid);
        var watch = await client.StreamAsync<WatchDirResponse>("WatchDir", new WatchDirRequest { Path = dir.Path });
        Assert.Equal(WatchDirResponse.EventOneofCase.Start, (await watch.NextAsync(LongWait))!.EventCase);
        await File.WriteAllTextAsync(dir["w.txt"], "x");
        await watch.WaitForAsync(m => m.Filesystem?.Name == "w.txt" && m.Filesystem.Type == EventType.Write, LongWait);
        Assert.Equal(before + 1, InotifyCount(agent.Pid));

        await watch.DisposeAsync(); // resets the HTTP/2 stream; the connection stays open
        await EventuallyAsync(() => InotifyCount(agent.Pid) == before, LongWait, () => $"{InotifyCount(agent.Pid)} inotify fds open, {before} before the watch");
    }

    private static string FileTransferUrl(string path) => "/files?path=" + Uri.EscapeDataString(path);

    private static ByteArrayContent OctetContent(string text)
    {
        var content = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(text));
        content.Headers.ContentType = new("application/octet-stream");
        return content;
    }
}
