using System.Diagnostics;
using System.Globalization;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// <see cref="UnifiedCgroups"/> against a real cgroup2 hierarchy and real processes. On these hybrid machines the
/// cgroup2 mount (/sys/fs/cgroup/unified) has no resource controller, but every v2 cgroup has the core files:
/// cgroup.procs, cgroup.threads, cgroup.type, cgroup.freeze, cgroup.kill and cgroup.events. Where no cgroup2 is mounted
/// the test mounts one on a temporary directory (the same single v2 hierarchy) and unmounts it after. Each test works
/// under a parent of its own and removes it, and kills the processes it started, whatever happens.
/// </summary>
public sealed class UnifiedCgroupsLiveTests : IAsyncLifetime
{
    private static readonly TimeSpan Bound = TimeSpan.FromSeconds(10);
    private readonly string _parent = "paddock-cgtest-" + Guid.NewGuid().ToString("N")[..10];
    private readonly List<Process> _started = [];
    private string _root = "";
    private string? _ownMount;
    private UnifiedCgroups _cgroups = null!;

    public async Task InitializeAsync()
    {
        var existing = MountTable.Read().FirstOrDefault(m => m.FsType == "cgroup2");
        if (existing is not null)
        {
            _root = existing.MountPoint;
        }
        else
        {
            _ownMount = Directory.CreateTempSubdirectory("paddock-cg2-").FullName;
            await RunAsync("mount", "-t", "cgroup2", "none", _ownMount);
            _root = _ownMount;
        }
        _cgroups = new UnifiedCgroups(_root, _parent, CgroupManager.Cgroupfs);
    }

    public async Task DisposeAsync()
    {
        foreach (var p in _started)
        {
            try
            {
                p.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // exited
            }
            p.Dispose();
        }
        foreach (var id in _cgroups.ExistingSandboxIds().ToList())
        {
            _cgroups.Thaw(id);
            await _cgroups.RemoveAsync(id, CancellationToken.None);
        }
        _cgroups.RemoveParentIfEmpty();
        if (_ownMount is not null)
        {
            await RunAsync("umount", _ownMount);
            Directory.Delete(_ownMount);
        }
    }

    private static async Task RunAsync(string file, params string[] args)
    {
        using var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardError = true })!;
        await p.WaitForExitAsync().WaitAsync(Bound);
        Assert.True(p.ExitCode == 0, $"{file} {string.Join(' ', args)}: {await p.StandardError.ReadToEndAsync()}");
    }

    /// <summary>Starts a process whose stdin and stdout the test holds (so it can make it fork when it wants).</summary>
    private Process Start(string file, params string[] args)
    {
        var p = Process.Start(new ProcessStartInfo(file, args) { RedirectStandardInput = true, RedirectStandardOutput = true })!;
        _started.Add(p);
        return p;
    }

    private string MakeSandbox(string id)
    {
        var dir = _cgroups.Directory(id);
        Directory.CreateDirectory(dir);
        return dir;
    }

    private static async Task<T> PollAsync<T>(Func<T> read, Func<T, bool> done)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var value = read();
            if (done(value) || clock.Elapsed > Bound)
            {
                return value;
            }
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task A_process_tree_is_listed_frozen_thawed_and_killed_with_cgroup_kill()
    {
        var dir = MakeSandbox("tree");
        // sh waits for a line before it forks, so that both sleeps are born inside the cgroup.
        var sh = Start("/bin/sh", "-c", "read go; sleep 300 & sleep 300 & echo started; wait");
        await File.WriteAllTextAsync(Path.Combine(dir, "cgroup.procs"), sh.Id.ToString(CultureInfo.InvariantCulture));
        await sh.StandardInput.WriteLineAsync("go");
        await sh.StandardInput.FlushAsync();
        Assert.Equal("started", await sh.StandardOutput.ReadLineAsync().WaitAsync(Bound));
        var pids = await PollAsync(() => _cgroups.ProcessesOf("tree"), p => p.Count == 3);
        Assert.Equal(3, pids.Count);
        Assert.Contains(sh.Id, pids);
        Assert.Equal(["tree"], _cgroups.ExistingSandboxIds());

        Assert.True(await _cgroups.FreezeAsync("tree", CancellationToken.None));
        Assert.True(_cgroups.IsFrozen("tree"));
        Assert.Contains("frozen 1", await File.ReadAllTextAsync(Path.Combine(dir, "cgroup.events")), StringComparison.Ordinal);
        _cgroups.Thaw("tree");
        Assert.False(await PollAsync(() => _cgroups.IsFrozen("tree"), f => f == false));

        // Frozen again: cgroup.kill must still end every task (v2 lets SIGKILL through the freezer).
        Assert.True(await _cgroups.FreezeAsync("tree", CancellationToken.None));
        await _cgroups.KillAllAsync("tree", CancellationToken.None).WaitAsync(Bound);
        Assert.Empty(_cgroups.ProcessesOf("tree"));
        await sh.WaitForExitAsync().WaitAsync(Bound);
        Assert.Equal(137, sh.ExitCode); // 128 + SIGKILL

        await _cgroups.RemoveAsync("tree", CancellationToken.None);
        Assert.False(Directory.Exists(dir));
        _cgroups.RemoveParentIfEmpty();
        Assert.False(Directory.Exists(_cgroups.ParentDirectory));
    }

    [Fact]
    public async Task Remove_kills_what_still_runs_and_removes_child_cgroups()
    {
        var dir = MakeSandbox("busy");
        var sleeper = Start("/bin/sleep", "300");
        Directory.CreateDirectory(Path.Combine(dir, "child"));
        await File.WriteAllTextAsync(Path.Combine(dir, "child", "cgroup.procs"), sleeper.Id.ToString(CultureInfo.InvariantCulture));
        Assert.Equal([sleeper.Id], _cgroups.ProcessesOf("busy"));
        await _cgroups.RemoveAsync("busy", CancellationToken.None).WaitAsync(Bound);
        Assert.False(Directory.Exists(dir));
        await sleeper.WaitForExitAsync().WaitAsync(Bound);
    }

    [Fact]
    public async Task Freezing_a_sandbox_without_a_cgroup_answers_false()
    {
        Assert.False(await _cgroups.FreezeAsync("none", CancellationToken.None));
        _cgroups.Thaw("none");
        await _cgroups.KillAllAsync("none", CancellationToken.None);
        await _cgroups.RemoveAsync("none", CancellationToken.None);
    }

    [Fact]
    public async Task The_pid_reserve_moves_one_thread_into_a_threaded_child_and_what_it_forks_starts_there()
    {
        var dir = MakeSandbox("reserve");
        // A process with a thread named as the agent's spawn thread; the thread forks `sleep` when it reads a line.
        const string Script = """
            import ctypes, subprocess, sys, threading
            def spawn():
                ctypes.CDLL(None).prctl(15, b"paddock-spawn", 0, 0, 0)
                print("named", flush=True)
                sys.stdin.readline()
                child = subprocess.Popen(["/bin/sleep", "300"])
                print(child.pid, flush=True)
                child.wait()
            threading.Thread(target=spawn).start()
            """;
        var python = Start("/usr/bin/python3", "-c", Script);
        await File.WriteAllTextAsync(Path.Combine(dir, "cgroup.procs"), python.Id.ToString(CultureInfo.InvariantCulture));
        Assert.Equal("named", await python.StandardOutput.ReadLineAsync().WaitAsync(Bound));
        var tid = PidReserve.FindThread(python.Id, PidReserve.SpawnThreadName);
        Assert.NotNull(tid);

        var work = Path.Combine(dir, PidReserve.WorkCgroup);
        _cgroups.CreateThreadCgroup(work);
        Assert.Equal("threaded", (await File.ReadAllTextAsync(Path.Combine(work, "cgroup.type"))).Trim());
        Assert.Equal("domain threaded", (await File.ReadAllTextAsync(Path.Combine(dir, "cgroup.type"))).Trim());
        _cgroups.MoveThread(work, tid.Value);
        Assert.Contains(tid.Value, Cgroups.Ids(Path.Combine(work, "cgroup.threads")));
        Assert.DoesNotContain(tid.Value, Cgroups.Ids(Path.Combine(dir, "cgroup.threads")));
        Assert.Contains(python.Id, Cgroups.Ids(Path.Combine(dir, "cgroup.threads"))); // the main thread stays

        await python.StandardInput.WriteLineAsync("go");
        await python.StandardInput.FlushAsync();
        var child = int.Parse((await python.StandardOutput.ReadLineAsync().WaitAsync(Bound))!, CultureInfo.InvariantCulture);
        // Born from the moved thread: the child is wholly in the work cgroup, not in the sandbox's own.
        Assert.Contains(child, Cgroups.Ids(Path.Combine(work, "cgroup.threads")));
        Assert.DoesNotContain(child, Cgroups.Ids(Path.Combine(dir, "cgroup.threads")));
        var all = _cgroups.ProcessesOf("reserve");
        Assert.Contains(python.Id, all);
        Assert.Contains(child, all);

        await _cgroups.KillAllAsync("reserve", CancellationToken.None).WaitAsync(Bound);
        await python.WaitForExitAsync().WaitAsync(Bound);
        await _cgroups.RemoveAsync("reserve", CancellationToken.None);
        Assert.False(Directory.Exists(dir));
    }
}
