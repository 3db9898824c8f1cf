using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Paddock.Daemon.Runtimes;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes.Host;

namespace Paddock.Daemon.Tests.Runtimes;

/// <summary>
/// Pause and resume on the gVisor tier (issue 15): a checkpoint with memory, every host resource freed while paused,
/// the restore by another runtime instance (a daemon restart), processes and listening servers still there.
/// </summary>
[Collection(GvisorCollection.Name)]
public sealed class GvisorPauseTests(GvisorFixture fixture)
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(120);

    [GvisorFact]
    public async Task A_paused_sandbox_holds_nothing_on_the_host_and_resumes_with_its_processes_in_another_instance()
    {
        var before = fixture.Footprint();
        var spec = fixture.Spec(fixture.Base);
        var sandbox = await fixture.Runtime.StartAsync(spec, TestEnvironment.Timeout(Long));
        try
        {
            var setup = await Run(fixture.Runtime, sandbox.SandboxId,
                "sleep 3600 >/dev/null 2>&1 & echo $! > /tmp/sleep.pid; " +
                "python3 -m http.server 8000 --bind 0.0.0.0 --directory /etc >/dev/null 2>&1 & " +
                "echo before-pause > /home/user/note; cat /tmp/sleep.pid");
            Assert.True(setup.ExitCode == 0, setup.ToString());
            var sleepPid = setup.Stdout.Trim();
            Assert.StartsWith("HTTP/1.0 200", await HttpGetAsync(fixture.Runtime, sandbox.SandboxId, 8000, "/hostname"), StringComparison.Ordinal);

            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));

            // Nothing of it runs or is held on the host but its directory (layer, disk image, memory image) and link record.
            var paused = fixture.Footprint();
            Assert.Equal(before with { SandboxDirectories = before.SandboxDirectories + 1 }, paused);
            var layout = new SandboxLayout(fixture.Options, sandbox.SandboxId);
            Assert.True(Directory.EnumerateFiles(layout.CheckpointDirectory).Any(), "the memory image is in the sandbox's directory");
            Assert.DoesNotContain(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.SandboxId);
            var listed = Assert.Single(await fixture.Runtime.ListPausedAsync(TestEnvironment.Timeout(Long)), p => p.SandboxId == sandbox.SandboxId);
            Assert.True(listed.HasMemory);
            // A pause of a paused sandbox changes nothing.
            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));

            // A restarted daemon's runtime: it settles (keeps) the paused sandbox, and resumes it from its image.
            using var restarted = fixture.NewRuntime();
            Assert.DoesNotContain(sandbox.SandboxId, await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long)));
            Assert.Single(await restarted.ListPausedAsync(TestEnvironment.Timeout(Long)), p => p.SandboxId == sandbox.SandboxId);
            var resumed = await restarted.ResumeAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));
            Assert.Equal(sandbox.SandboxId, resumed.SandboxId);

            var after = await Run(restarted, sandbox.SandboxId, $"cat /proc/{sleepPid}/comm; cat /home/user/note");
            Assert.True(after.ExitCode == 0, after.ToString());
            Assert.Equal("sleep\nbefore-pause\n", after.Stdout);
            Assert.StartsWith("HTTP/1.0 200", await HttpGetAsync(restarted, sandbox.SandboxId, 8000, "/hostname"), StringComparison.Ordinal);
            Assert.False(Directory.Exists(layout.CheckpointDirectory), "the image goes once the sandbox runs again");
            Assert.Empty(await restarted.ListPausedAsync(TestEnvironment.Timeout(Long)));
            Assert.Contains(await restarted.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.SandboxId);
            await restarted.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    [GvisorFact]
    public async Task A_filesystem_only_pause_reboots_on_the_kept_files()
    {
        await using var sandbox = await fixture.StartAsync(fixture.Spec(fixture.Base));
        var setup = await sandbox.RunAsync("sleep 3600 >/dev/null 2>&1 & echo $! > /tmp/sleep.pid; echo kept > /home/user/note");
        Assert.True(setup.ExitCode == 0, setup.ToString());

        await fixture.Runtime.PauseAsync(sandbox.Id, keepMemory: false, TestEnvironment.Timeout(Long));
        var listed = Assert.Single(await fixture.Runtime.ListPausedAsync(TestEnvironment.Timeout(Long)), p => p.SandboxId == sandbox.Id);
        Assert.False(listed.HasMemory);
        Assert.False(Directory.Exists(new SandboxLayout(fixture.Options, sandbox.Id).CheckpointDirectory));
        await fixture.Runtime.ResumeAsync(sandbox.Id, keepMemory: true, TestEnvironment.Timeout(Long));

        // A fresh boot: the files are there, the old processes are not (pids restart in the new namespace, so the
        // check is by name, not by the old pid).
        var after = await sandbox.RunAsync("cat /home/user/note; cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$'; true");
        Assert.Equal("kept\n0\n", after.Stdout);
    }

    [GvisorFact]
    public async Task A_daemon_killed_after_the_checkpoint_but_before_the_release_leaves_a_paused_sandbox_that_a_new_instance_settles()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        try
        {
            var layout = new SandboxLayout(fixture.Options, sandbox.SandboxId);
            await Run(fixture.Runtime, sandbox.SandboxId, "echo 41 > /root/n");
            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));
            // What a crash between the marker and the release leaves: a pause whose mounts are still there. The overlay
            // is mounted again by hand (the state the pause's last step would have released).
            SandboxFilesystem.Remount(layout, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
            Assert.NotEqual(before with { SandboxDirectories = before.SandboxDirectories + 1 }, fixture.Footprint());

            using var restarted = fixture.NewRuntime();
            Assert.DoesNotContain(sandbox.SandboxId, await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long)));
            Assert.Equal(before with { SandboxDirectories = before.SandboxDirectories + 1 }, fixture.Footprint());
            await restarted.ResumeAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));
            Assert.Equal("41\n", (await Run(restarted, sandbox.SandboxId, "cat /root/n")).Stdout);
            await restarted.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    [GvisorFact]
    public async Task A_pause_interrupted_before_its_image_was_complete_leaves_nothing_after_cleanup()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        var layout = new SandboxLayout(fixture.Options, sandbox.SandboxId);
        try
        {
            // What a SIGKILL of the daemon during runsc checkpoint leaves: a partial image, the Sentry gone, no marker.
            Directory.CreateDirectory(layout.PartialCheckpointDirectory);
            await File.WriteAllTextAsync(Path.Combine(layout.PartialCheckpointDirectory, "checkpoint.img"), "half");
            Assert.Equal(0, Daemon.Native.Signals.Send(sandbox.HostPid!.Value, Daemon.Native.Signals.SIGKILL));

            using var restarted = fixture.NewRuntime();
            for (var i = 0; i < 100 && (await restarted.ListAsync(TestEnvironment.Timeout(Long))).Any(s => s.SandboxId == sandbox.SandboxId); i++)
            {
                await Task.Delay(100);
            }
            Assert.Contains(sandbox.SandboxId, await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long)));
            Assert.Empty(await restarted.ListPausedAsync(TestEnvironment.Timeout(Long)));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }

    internal static Task<CommandOutput> Run(ISandboxRuntime runtime, string id, string command) =>
        AgentCalls.RunAsync(runtime, id, "/bin/sh", ["-c", command], "root", TimeSpan.FromSeconds(60));

    internal static async Task<string> HttpGetAsync(ISandboxRuntime runtime, string id, int port, string path)
    {
        for (var i = 0; ; i++)
        {
            try
            {
                await using var stream = await runtime.ConnectAsync(id, port, TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                await stream.WriteAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.0\r\n\r\n"), TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
                using var reader = new StreamReader(stream, Encoding.ASCII);
                return await reader.ReadToEndAsync(TestEnvironment.Timeout(TimeSpan.FromSeconds(10)));
            }
            catch (Exception ex) when (i < 50 && ex is SandboxPortUnreachableException or IOException or SocketException or OperationCanceledException)
            {
                await Task.Delay(100);
            }
        }
    }
}

/// <summary>The runc tier's filesystem-only pause: processes end, files stay, a resume boots afresh; memory is refused.</summary>
[Collection(RuncCollection.Name)]
public sealed class RuncPauseTests(RuncFixture fixture)
{
    private static readonly TimeSpan Long = TimeSpan.FromSeconds(120);

    [Fact]
    public async Task Memory_is_refused_naming_the_tier_and_a_filesystem_pause_keeps_files_and_frees_the_host()
    {
        var before = fixture.Footprint();
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        try
        {
            var setup = await GvisorPauseTests.Run(fixture.Runtime, sandbox.SandboxId, "echo kept > /root/note; sleep 3600 >/dev/null 2>&1 & echo $! > /root/sleep.pid");
            Assert.True(setup.ExitCode == 0, setup.ToString());

            var refused = await Assert.ThrowsAsync<SandboxPauseUnsupportedException>(() => fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long)));
            Assert.Contains("runc", refused.Message, StringComparison.Ordinal);
            // Refused means untouched: it still runs.
            Assert.Equal("kept\n", (await GvisorPauseTests.Run(fixture.Runtime, sandbox.SandboxId, "cat /root/note")).Stdout);

            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: false, TestEnvironment.Timeout(Long));
            Assert.Equal(before with { SandboxDirectories = before.SandboxDirectories + 1 }, fixture.Footprint());
            Assert.False(Assert.Single(await fixture.Runtime.ListPausedAsync(TestEnvironment.Timeout(Long)), p => p.SandboxId == sandbox.SandboxId).HasMemory);
            Assert.DoesNotContain(await fixture.Runtime.ListAsync(TestEnvironment.Timeout(Long)), s => s.SandboxId == sandbox.SandboxId);

            using var restarted = fixture.NewRuntime();
            Assert.DoesNotContain(sandbox.SandboxId, await restarted.CleanupLeftoversAsync(TestEnvironment.Timeout(Long)));
            await restarted.ResumeAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));
            // A fresh boot: pids restart in the new namespace, so the check is by name, not by the old pid.
            var after = await GvisorPauseTests.Run(restarted, sandbox.SandboxId, "cat /root/note; cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$'; true");
            Assert.Equal("kept\n0\n", after.Stdout);
            await restarted.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
        Assert.Equal(before, fixture.Footprint());
    }
    [Fact]
    public async Task A_pause_while_another_mount_namespace_holds_the_disk_resumes_on_the_same_filesystem_with_nothing_lost()
    {
        // A mount namespace made while the sandbox runs (here unshare -m; on a host, any container's or tier's made
        // then) holds a copy of the disk's mount: the pause's unmount succeeds, but the filesystem lives on there, with
        // the last writes not yet on the image. The resume must mount that same filesystem, not a second, stale one
        // from the image (before: a file written just before the pause was gone after the resume).
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox), TestEnvironment.Timeout(Long));
        var layout = new SandboxLayout(fixture.Options, sandbox.SandboxId);
        Process? holder = null;
        try
        {
            var device = MountTable.Read().Single(m => m.MountPoint == layout.DiskMount).Source;
            // It lets go of every other loop-backed or overlay mount of the host at once, so that it pins this disk
            // only, not the disks of tests running beside this one.
            holder = Process.Start("unshare", ["-m", "--propagation", "private", "sh", "-c", HoldOnly, "sh", layout.DiskMount])!;
            var ours = File.ResolveLinkTarget("/proc/self/ns/mnt", returnFinalTarget: false)!.ToString();
            for (var i = 0; File.ResolveLinkTarget($"/proc/{holder.Id}/ns/mnt", returnFinalTarget: false)?.ToString() == ours; i++)
            {
                Assert.True(i < 100, "unshare did not make its mount namespace within 10 s");
                await Task.Delay(100);
            }
            var written = await GvisorPauseTests.Run(fixture.Runtime, sandbox.SandboxId, "echo synced > /root/synced; sync; echo unsynced > /root/unsynced");
            Assert.True(written.ExitCode == 0, written.ToString());

            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: false, TestEnvironment.Timeout(Long));
            Assert.DoesNotContain(MountTable.Read(), m => m.MountPoint == layout.DiskMount);
            Assert.Equal(device, LoopMounts.AttachedDevice(layout.DiskImage));
            await fixture.Runtime.ResumeAsync(sandbox.SandboxId, keepMemory: false, TestEnvironment.Timeout(Long));

            Assert.Equal(device, MountTable.Read().Single(m => m.MountPoint == layout.DiskMount).Source);
            var read = await GvisorPauseTests.Run(fixture.Runtime, sandbox.SandboxId, "cat /root/synced /root/unsynced; echo after > /root/after; cat /root/after");
            Assert.Equal("synced\nunsynced\nafter\n", read.Stdout);
        }
        finally
        {
            if (holder is not null)
            {
                holder.Kill();
                await holder.WaitForExitAsync(TestEnvironment.Timeout(Long));
                holder.Dispose();
            }
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
    }

    [Fact]
    public async Task A_pooled_sandbox_keeps_its_claimers_token_and_variables_across_a_filesystem_pause()
    {
        // A warm pool member boots with the pool's token and no variables; the hand-over's /init gives the running
        // agent the claimer's, and KeepIdentityAsync the bundle, which the resume boots again.
        var sandbox = await fixture.Runtime.StartAsync(fixture.Spec(fixture.Busybox, token: "pool-token"), TestEnvironment.Timeout(Long));
        try
        {
            var vars = new Dictionary<string, string> { ["GREETING"] = "hello from the claimer", ["QUOTED"] = "a \"b\" c" };
            await Daemon.Pools.AgentInit.SendAsync(fixture.Runtime, sandbox.SandboxId, "pool-token", vars, "claimer-token", TestEnvironment.Timeout(Long));
            await fixture.Runtime.KeepIdentityAsync(sandbox.SandboxId, vars, "claimer-token", TestEnvironment.Timeout(Long));
            const string Print = "echo \"$GREETING|$QUOTED\"";
            Assert.Equal("hello from the claimer|a \"b\" c\n", (await Run(sandbox.SandboxId, Print, "claimer-token")).Stdout);

            await fixture.Runtime.PauseAsync(sandbox.SandboxId, keepMemory: false, TestEnvironment.Timeout(Long));
            await fixture.Runtime.ResumeAsync(sandbox.SandboxId, keepMemory: true, TestEnvironment.Timeout(Long));

            Assert.Equal("hello from the claimer|a \"b\" c\n", (await Run(sandbox.SandboxId, Print, "claimer-token")).Stdout);
            var refused = await Assert.ThrowsAsync<IOException>(() => Run(sandbox.SandboxId, "true", "pool-token"));
            Assert.Contains("401", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            await fixture.Runtime.DestroyAsync(sandbox.SandboxId, TestEnvironment.Timeout(Long));
        }
    }

    // $1: the mount to keep. The rest of the loop-backed and overlay mounts, deepest first, lazily; then sleep.
    private const string HoldOnly = """
        awk -v keep="$1" '{ for (i = 7; $i != "-"; i++) {} } $5 != keep && ($(i + 1) == "overlay" || $(i + 2) ~ /^\/dev\/loop/) { print $5 }' /proc/self/mountinfo \
          | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
        exec sleep 600
        """;

    private Task<CommandOutput> Run(string id, string command, string token) =>
        AgentCalls.RunAsync(fixture.Runtime, id, "/bin/sh", ["-c", command], "root", TimeSpan.FromSeconds(60), accessToken: token);
}
