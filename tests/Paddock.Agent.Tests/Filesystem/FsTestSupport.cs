using System.Diagnostics;
using Paddock.Agent.Native;

namespace Paddock.Agent.Tests.Filesystem;

/// <summary>A directory under /tmp for one test, removed with everything in it (immutable flags cleared first).</summary>
internal sealed class TempDir : IDisposable
{
    public TempDir()
    {
        Path = Directory.CreateTempSubdirectory("paddock-fs-test-").FullName;
    }

    public string Path { get; }

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        if (!Directory.Exists(Path))
        {
            return;
        }
        FsTestSupport.Run("chattr", "-R", "-i", Path); // in case a test left something immutable
        Directory.Delete(Path, recursive: true);
    }
}

internal static class FsTestSupport
{
    public static readonly TimeSpan LongWait = TimeSpan.FromSeconds(30);

    /// <summary>Runs a tool and returns its exit code (bounded wait).</summary>
    public static int Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start)!;
        if (!process.WaitForExit(TimeSpan.FromSeconds(30)))
        {
            process.Kill();
            throw new TimeoutException($"{file} did not finish in 30 s");
        }
        return process.ExitCode;
    }

    public static void SetMode(string path, UnixFileMode mode) => File.SetUnixFileMode(path, mode);

    public static UnixFileMode GetMode(string path) => File.GetUnixFileMode(path);

    public static void Chown(string path, string user)
    {
        Assert.Equal(0, Run("chown", "-h", user + ":", path));
    }

    /// <summary>Sets an extended attribute on a file (through the agent's own interop, which the tests may use).</summary>
    public static void SetXattr(string path, string name, string value)
    {
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
        ExtendedAttributes.Set(file, path, name, System.Text.Encoding.ASCII.GetBytes(value));
    }

    /// <summary>The targets of a process's open fds (readlink of /proc/PID/fd/*).</summary>
    public static List<string> OpenFiles(int pid)
    {
        var targets = new List<string>();
        foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
        {
            try
            {
                var target = new FileInfo(fd).LinkTarget;
                if (target is not null)
                {
                    targets.Add(target);
                }
            }
            catch (IOException)
            {
                // closed while listed
            }
        }
        return targets;
    }

    public static int InotifyCount(int pid) => OpenFiles(pid).Count(t => t == "anon_inode:inotify");

    /// <summary>Peak resident set size of a process in KiB (VmHWM of /proc/PID/status).</summary>
    public static long PeakRssKiB(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmHWM:".Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException("no VmHWM line");
    }

    /// <summary>Polls <paramref name="condition"/> every 50 ms until it holds; fails after <paramref name="timeout"/>.</summary>
    public static async Task EventuallyAsync(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"condition not met within {timeout}: {describe()}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>As above, for a condition that has to call the agent.</summary>
    public static async Task EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"condition not met within {timeout}: {describe()}");
            }
            await Task.Delay(50);
        }
    }

    public static async Task<ConnectExceptionAssert> ThrowsConnect(Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<Paddock.Envd.Connect.ConnectException>(call);
        return new ConnectExceptionAssert(ex);
    }
}

internal sealed record ConnectExceptionAssert(Paddock.Envd.Connect.ConnectException Exception)
{
    public ConnectExceptionAssert Is(Paddock.Envd.Connect.ConnectCode code, string? messageContains = null)
    {
        Assert.True(code == Exception.Code, $"expected {code}, got {Exception.Code}: {Exception.Message}");
        if (messageContains is not null)
        {
            Assert.Contains(messageContains, Exception.Message, StringComparison.Ordinal);
        }
        return this;
    }
}

/// <summary>One agent shared by the tests of a class (they use separate temp directories).</summary>
public sealed class SharedAgent : IAsyncLifetime
{
    public AgentProcess Agent { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Agent = await AgentProcess.StartAsync().WaitAsync(TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync()
    {
        await Agent.DisposeAsync();
    }
}
