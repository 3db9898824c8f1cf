using System.Text.Json;
using Paddock.Client;
using Paddock.Client.Tests;

namespace Paddock.Cli.Tests;

/// <summary>`paddock template build -f` against the real paddockd and runc: Dockerfiles from base and from scratch, failures, escapes.</summary>
[Trait("needs", "daemon")]
public sealed class TemplateBuildCliTests : IClassFixture<DaemonFixture>, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);

    private readonly DaemonProcess _daemon;
    private readonly string _dir = Directory.CreateTempSubdirectory("paddock-cli-dockerfile-").FullName;
    private readonly string _suffix = Guid.NewGuid().ToString("N")[..8];

    public TemplateBuildCliTests(DaemonFixture fixture) => _daemon = fixture.Daemon;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private Task<CliResult> Paddock(params string[] args) => Cli.RunAsync(Cli.DaemonEnv(_daemon), args);

    private string Context(string name, string dockerfile, params (string Path, string Content)[] files)
    {
        var context = Directory.CreateDirectory(Path.Combine(_dir, name)).FullName;
        File.WriteAllText(Path.Combine(context, "Dockerfile"), dockerfile);
        foreach (var (path, content) in files)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(context, path))!);
            File.WriteAllText(Path.Combine(context, path), content);
        }
        return context;
    }

    private Task<CliResult> Build(string context, string name) =>
        Paddock("template", "build", "-f", Path.Combine(context, "Dockerfile"), "--name", name, "--context", context);

    [Fact]
    public async Task A_Dockerfile_from_base_builds_and_its_sandboxes_start_with_its_files_envs_user_workdir_and_cmd()
    {
        var name = "cli-df-" + _suffix;
        var context = Context("app", """
            # Built by the CLI test.
            FROM base
            ARG GREETING=hello-from-arg
            RUN echo "$GREETING" > /opt/built-by-run \
                && whoami > /opt/run-as
            COPY app /srv/app
            COPY --chown=user:user run.sh /srv/
            ENV APP_MODE=test OTHER="two words"
            WORKDIR /srv/app
            USER user
            EXPOSE 8080
            CMD ["sh", "-c", "echo started > /tmp/cmd-ran; exec sleep 600"]
            """, ("app/hello.txt", "hello\n"), ("app/nested/deep.txt", "deep\n"), ("run.sh", "#!/bin/sh\n"));
        var built = await Build(context, name).WaitAsync(Timeout);
        Assert.True(built.ExitCode == 0, built.ToString());
        var templateId = built.Stdout.Trim();
        Assert.Matches("^[A-Za-z0-9_-]+$", templateId);
        Assert.Contains("[1/", built.Stderr, StringComparison.Ordinal);
        Assert.Contains("EXPOSE is ignored", built.Stderr, StringComparison.Ordinal);
        string? sandboxId = null;
        try
        {
            var created = await Paddock("sandbox", "create", name, "--timeout", "300").WaitAsync(Timeout);
            Assert.True(created.ExitCode == 0, created.ToString());
            sandboxId = created.Stdout.Trim();
            // The start command runs detached before the create returns; the wait for its file is bounded (50 x 0.2 s).
            var seen = await Paddock("exec", sandboxId, "--",
                "cat /opt/built-by-run /opt/run-as /srv/app/hello.txt /srv/app/nested/deep.txt; stat -c %U /srv/run.sh /srv/app/hello.txt; "
                + "echo \"$APP_MODE|$OTHER\"; whoami; pwd; "
                + "for i in $(seq 1 50); do [ -e /tmp/cmd-ran ] && break; sleep 0.2; done; cat /tmp/cmd-ran; "
                + "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -o 'sleep 600' | head -1").WaitAsync(Timeout);
            Assert.True(seen.ExitCode == 0, seen.ToString());
            Assert.Equal("hello-from-arg\nroot\nhello\ndeep\nuser\nroot\ntest|two words\nuser\n/srv/app\nstarted\nsleep 600\n", seen.Stdout);

            // The same Dockerfile again: every filesystem step comes from the cache, and the id is kept.
            var again = await Build(context, name).WaitAsync(Timeout);
            Assert.True(again.ExitCode == 0, again.ToString());
            Assert.Equal(templateId, again.Stdout.Trim());
            Assert.Equal(4, again.Stderr.Split('\n').Count(l => l.StartsWith("CACHED [", StringComparison.Ordinal)));
        }
        finally
        {
            if (sandboxId is not null)
            {
                await Paddock("sandbox", "kill", sandboxId).WaitAsync(Timeout);
            }
            var removed = await Paddock("template", "rm", name).WaitAsync(Timeout);
            Assert.True(removed.ExitCode == 0, removed.ToString());
        }
        Assert.Equal(66, (await Paddock("template", "rm", name).WaitAsync(Timeout)).ExitCode);
    }

    [Fact]
    public async Task A_failing_RUN_fails_the_build_with_its_output_and_registers_nothing()
    {
        var name = "cli-df-fail-" + _suffix;
        var context = Context("fail", "FROM base\nRUN echo about-to-fail && echo to-stderr >&2 && exit 7\n");
        var built = await Build(context, name).WaitAsync(Timeout);
        Assert.Equal(1, built.ExitCode);
        Assert.Equal("", built.Stdout);
        Assert.Contains("exited with code 7", built.Stderr, StringComparison.Ordinal);
        Assert.Contains("failed at step 1", built.Stderr, StringComparison.Ordinal);
        Assert.Contains("  | about-to-fail", built.Stderr, StringComparison.Ordinal);
        Assert.Contains("  | to-stderr", built.Stderr, StringComparison.Ordinal);
        var list = await Paddock("template", "ls", "--json").WaitAsync(Timeout);
        Assert.Equal(0, list.ExitCode);
        using var doc = JsonDocument.Parse(list.Stdout);
        Assert.DoesNotContain(doc.RootElement.EnumerateArray(), t => t.GetProperty("names").EnumerateArray().Any(n => n.GetString() == name));
        var create = await Paddock("sandbox", "create", name).WaitAsync(Timeout);
        Assert.NotEqual(0, create.ExitCode);
    }

    [Fact]
    public async Task From_scratch_copies_a_static_binary_and_files_and_RUN_without_a_shell_is_refused()
    {
        var name = "cli-df-scratch-" + _suffix;
        var context = Context("scratch", """
            FROM scratch
            COPY busybox /bin/busybox
            COPY --chmod=640 data.txt /data/
            WORKDIR /work/dir
            ENV FROM_SCRATCH=yes
            """, ("data.txt", "from scratch\n"));
        File.Copy("/bin/busybox", Path.Combine(context, "busybox"));
        var built = await Build(context, name).WaitAsync(Timeout);
        Assert.True(built.ExitCode == 0, built.ToString());
        try
        {
            var connection = _daemon.Connection();
            await using var sandbox = await Sandbox.CreateAsync(name, new SandboxOptions { Connection = connection, Timeout = TimeSpan.FromMinutes(5) }).WaitAsync(Timeout);
            Assert.Equal("from scratch\n", await sandbox.Files.ReadTextAsync("/data/data.txt").WaitAsync(Timeout));
            var binary = await sandbox.Files.GetInfoAsync("/bin/busybox").WaitAsync(Timeout);
            Assert.Equal(new FileInfo("/bin/busybox").Length, binary.Size);
            Assert.True(await sandbox.Files.ExistsAsync("/work/dir").WaitAsync(Timeout));
            // Nothing of base, nor of the build's toolbox, came along.
            Assert.False(await sandbox.Files.ExistsAsync("/etc/debian_version").WaitAsync(Timeout));
            Assert.False(await sandbox.Files.ExistsAsync("/usr").WaitAsync(Timeout));
            Assert.False(await sandbox.Files.ExistsAsync("/.paddock-build-tools").WaitAsync(Timeout));
            await sandbox.KillAsync().WaitAsync(Timeout);
        }
        finally
        {
            await Paddock("template", "rm", name).WaitAsync(Timeout);
        }

        var noShell = Context("scratch-run", "FROM scratch\nCOPY data.txt /\nRUN echo hi\n", ("data.txt", "x"));
        var refused = await Build(noShell, name + "-run").WaitAsync(Timeout);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("RUN needs /bin/sh", refused.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Copy_sources_outside_the_context_are_refused_before_anything_is_sent()
    {
        var context = Context("escape", "FROM base\nCOPY out/passwd /x\n");
        Directory.CreateSymbolicLink(Path.Combine(context, "out"), "/etc");
        var viaLink = await Build(context, "cli-df-escape-" + _suffix).WaitAsync(Timeout);
        Assert.Equal(64, viaLink.ExitCode);
        Assert.Contains("outside the build context", viaLink.Stderr, StringComparison.Ordinal);

        foreach (var source in (string[])["../secret", "/etc/passwd"])
        {
            File.WriteAllText(Path.Combine(context, "Dockerfile"), $"FROM base\n\nCOPY {source} /x\n");
            var refused = await Build(context, "cli-df-escape-" + _suffix).WaitAsync(Timeout);
            Assert.Equal(64, refused.ExitCode);
            Assert.Contains("Dockerfile line 3:", refused.Stderr, StringComparison.Ordinal);
            Assert.Contains("outside the build context", refused.Stderr, StringComparison.Ordinal);
        }

        File.WriteAllText(Path.Combine(context, "Dockerfile"), "FROM base AS build\nFROM base\n");
        var multiStage = await Build(context, "cli-df-escape-" + _suffix).WaitAsync(Timeout);
        Assert.Equal(64, multiStage.ExitCode);
        Assert.Contains("line 2: a second FROM: multi-stage builds are not supported", multiStage.Stderr, StringComparison.Ordinal);
    }
}
