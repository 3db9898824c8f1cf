using System.Security.Cryptography;
using System.Text;

namespace Paddock.Client.Tests;

/// <summary>sandbox.Files against a real agent (which, run as a plain process, sees this machine's filesystem).</summary>
public sealed class FilesTests : IClassFixture<AgentFixture>, IDisposable
{
    private readonly AgentProcess _agent;
    private readonly string _dir;

    public FilesTests(AgentFixture fixture)
    {
        _agent = fixture.Agent;
        _dir = TestDirs.Create("paddock-client-files-");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public async Task Text_and_bytes_round_trip()
    {
        await using var sandbox = _agent.Sandbox();
        var path = Path.Combine(_dir, "nested/dir/hello.txt");
        var written = await sandbox.Files.WriteAsync(path, "grüß dich\n", cancellationToken: Limits.Token());
        Assert.Equal(path, written.Path);
        Assert.Equal("hello.txt", written.Name);
        Assert.Equal("grüß dich\n", await sandbox.Files.ReadTextAsync(path, cancellationToken: Limits.Token()));
        Assert.Equal("grüß dich\n", await File.ReadAllTextAsync(path, Limits.Token()));

        var bytes = new byte[] { 0, 1, 2, 255, 254, 10 };
        await sandbox.Files.WriteAsync(path, bytes, cancellationToken: Limits.Token());
        Assert.Equal(bytes, await sandbox.Files.ReadBytesAsync(path, cancellationToken: Limits.Token()));
    }

    [Fact]
    public async Task Empty_files_round_trip()
    {
        await using var sandbox = _agent.Sandbox();
        var path = Path.Combine(_dir, "empty");
        await sandbox.Files.WriteAsync(path, "", cancellationToken: Limits.Token());
        Assert.Equal("", await sandbox.Files.ReadTextAsync(path, cancellationToken: Limits.Token()));
        Assert.Equal(0, new FileInfo(path).Length);
    }

    [Fact]
    public async Task Streams_move_large_files_both_ways()
    {
        await using var sandbox = _agent.Sandbox();
        var path = Path.Combine(_dir, "big.bin");
        var data = RandomNumberGenerator.GetBytes(12 * 1024 * 1024 + 17);
        await using (var source = new MemoryStream(data))
        {
            await sandbox.Files.WriteAsync(path, source, cancellationToken: Limits.Token(120));
        }
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(await File.ReadAllBytesAsync(path, Limits.Token())));

        await using var download = await sandbox.Files.OpenReadAsync(path, cancellationToken: Limits.Token());
        using var copy = new MemoryStream();
        await download.CopyToAsync(copy, Limits.Token(120));
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(copy.ToArray()));
    }

    [Fact]
    public async Task List_exists_info_makeDir_rename_remove()
    {
        await using var sandbox = _agent.Sandbox();
        var sub = Path.Combine(_dir, "sub");
        Assert.True(await sandbox.Files.MakeDirAsync(sub, cancellationToken: Limits.Token()));
        Assert.False(await sandbox.Files.MakeDirAsync(sub, cancellationToken: Limits.Token()));
        await sandbox.Files.WriteAsync(Path.Combine(sub, "a.txt"), "abc", cancellationToken: Limits.Token());
        await sandbox.Files.WriteAsync(Path.Combine(_dir, "b.txt"), "12345", cancellationToken: Limits.Token());

        var top = await sandbox.Files.ListAsync(_dir, cancellationToken: Limits.Token());
        Assert.Equal(["b.txt", "sub"], top.Select(e => e.Name).Order(StringComparer.Ordinal));
        Assert.Equal(FileType.Directory, top.Single(e => e.Name == "sub").Type);
        var deep = await sandbox.Files.ListAsync(_dir, depth: 2, cancellationToken: Limits.Token());
        Assert.Contains(deep, e => e.Path == Path.Combine(sub, "a.txt"));

        var info = await sandbox.Files.GetInfoAsync(Path.Combine(_dir, "b.txt"), cancellationToken: Limits.Token());
        Assert.Equal(FileType.File, info.Type);
        Assert.Equal(5, info.Size);
        Assert.Equal("b.txt", info.Name);
        Assert.NotNull(info.ModifiedTime);

        Assert.True(await sandbox.Files.ExistsAsync(Path.Combine(_dir, "b.txt"), cancellationToken: Limits.Token()));
        var moved = await sandbox.Files.RenameAsync(Path.Combine(_dir, "b.txt"), Path.Combine(_dir, "c.txt"), cancellationToken: Limits.Token());
        Assert.Equal(Path.Combine(_dir, "c.txt"), moved.Path);
        Assert.False(await sandbox.Files.ExistsAsync(Path.Combine(_dir, "b.txt"), cancellationToken: Limits.Token()));
        Assert.Equal("12345", await File.ReadAllTextAsync(Path.Combine(_dir, "c.txt"), Limits.Token()));

        await sandbox.Files.RemoveAsync(sub, cancellationToken: Limits.Token());
        Assert.False(await sandbox.Files.ExistsAsync(sub, cancellationToken: Limits.Token()));
        Assert.False(Directory.Exists(sub));
    }

    [Fact]
    public async Task Missing_files_are_NotFoundExceptions()
    {
        await using var sandbox = _agent.Sandbox();
        var missing = Path.Combine(_dir, "does-not-exist");
        await Assert.ThrowsAsync<NotFoundException>(() => sandbox.Files.ReadTextAsync(missing, cancellationToken: Limits.Token()));
        await Assert.ThrowsAsync<NotFoundException>(() => sandbox.Files.OpenReadAsync(missing, cancellationToken: Limits.Token()));
        await Assert.ThrowsAsync<NotFoundException>(() => sandbox.Files.GetInfoAsync(missing, cancellationToken: Limits.Token()));
        await Assert.ThrowsAsync<NotFoundException>(() => sandbox.Files.ListAsync(missing, cancellationToken: Limits.Token()));
    }

    [Fact]
    public async Task Watch_reports_changes_made_after_it_started()
    {
        await using var sandbox = _agent.Sandbox();
        await using var watch = await sandbox.Files.WatchDirAsync(_dir, new WatchOptions { Timeout = TimeSpan.Zero }, Limits.Token());
        await File.WriteAllTextAsync(Path.Combine(_dir, "watched.txt"), "x", Limits.Token());

        var events = new List<FilesystemEvent>();
        await foreach (var e in watch.WithCancellation(Limits.Token(30)))
        {
            events.Add(e);
            if (e.Name == "watched.txt" && e.Type is FilesystemEventType.Write)
            {
                break;
            }
        }
        Assert.Contains(events, e => e.Name == "watched.txt" && e.Type == FilesystemEventType.Create);
    }

    [Fact]
    public async Task Disposing_a_watch_ends_its_iteration()
    {
        await using var sandbox = _agent.Sandbox();
        var watch = await sandbox.Files.WatchDirAsync(_dir, new WatchOptions { Timeout = TimeSpan.Zero }, Limits.Token());
        var iteration = Task.Run(async () =>
        {
            var n = 0;
            await foreach (var _ in watch)
            {
                n++;
            }
            return n;
        });
        await watch.DisposeAsync();
        Assert.Equal(0, await iteration.WaitAsync(TimeSpan.FromSeconds(30)));
    }
}
