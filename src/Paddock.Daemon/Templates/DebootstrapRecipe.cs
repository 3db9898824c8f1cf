using Paddock.Daemon.Native;

namespace Paddock.Daemon.Templates;

/// <summary>
/// A Debian template made with debootstrap from the host's mirror, with an unprivileged account that has
/// passwordless sudo, as E2B's base template has. <see cref="Base"/> is the <c>base</c> template.
/// </summary>
internal sealed record DebootstrapRecipe : ITemplateRecipe
{
    /// <summary>
    /// Debian 12 with what agents commonly reach for: a shell, Python, Node.js, git, curl with CA certificates,
    /// ps/top, sudo. debootstrap of minbase with these takes about a minute here and makes about 500 MB.
    /// </summary>
    public static DebootstrapRecipe Base { get; } = new()
    {
        Name = "base",
        Suite = "bookworm",
        Variant = "minbase",
        Packages = ["bash", "coreutils", "python3", "nodejs", "git", "curl", "ca-certificates", "procps", "sudo"],
        User = "user",
        UserId = 1000,
    };

    /// <summary>
    /// <c>base</c> plus the kernels of the code interpreter (issue 16): IPython's kernel with matplotlib, pandas,
    /// numpy and Pillow, and the TypeScript compiler, all from Debian. The interpreter's own server and kernels are not in the template: they come
    /// with the agent bundle (<c>/.paddock/interp</c>), so a change to them needs no rebuild of this template, which
    /// takes minutes (ARCHITECTURE.md has the measurement). Answers to E2B's name <c>code-interpreter-v1</c> too, the
    /// default template of the <c>@e2b/code-interpreter</c> SDK.
    /// </summary>
    public static DebootstrapRecipe CodeInterpreter { get; } = Base with
    {
        Name = "code-interpreter",
        // Through apt in the new root, not debootstrap's --include: debootstrap's own resolver left python3-zmq,
        // python3-ipykernel, gdb and python3-debugpy unconfigured ("dependency problems", measured here 2026-12-06).
        // node-typescript (4.8, 67 MB installed): the TypeScript kernel strips each cell's types with its compiler.
        AptPackages = ["python3-ipykernel", "python3-matplotlib", "python3-pandas", "python3-numpy", "python3-pil", "node-typescript"],
        Aliases = ["code-interpreter-v1"],
        // Its log to a file: a detached start command's output is nobody's to read once the create has returned.
        StartCmd = "exec /.paddock/interp/paddock-interp serve >>/tmp/paddock-interp.log 2>&1",
        ReadyCmd = "/.paddock/interp/paddock-interp wait-ready",
    };

    public required string Name { get; init; }

    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>Packages installed after debootstrap with <c>apt-get install --no-install-recommends</c> in the new root.</summary>
    public IReadOnlyList<string> AptPackages { get; init; } = [];

    public string? StartCmd { get; init; }

    public string? ReadyCmd { get; init; }

    public required string Suite { get; init; }

    public required string Variant { get; init; }

    public required IReadOnlyList<string> Packages { get; init; }

    /// <summary>The unprivileged account made in the template (home /home/NAME, shell bash, passwordless sudo).</summary>
    public required string User { get; init; }

    public required uint UserId { get; init; }

    /// <summary>The debootstrap program.</summary>
    public string Debootstrap { get; init; } = "debootstrap";

    /// <summary>Where the mirror is read from (tests point it elsewhere).</summary>
    public string SourcesFile { get; init; } = DebianMirror.Deb822Sources;

    public string? DefaultUser => User;

    // "v2": bump when what PopulateAsync does changes in a way the fields do not show (v2: /etc/profile reads $EUID).
    public string Fingerprint =>
        $"debootstrap v2; suite={Suite}; variant={Variant}; packages={string.Join(',', Packages.Order(StringComparer.Ordinal))}; user={User}:{UserId}; sudo=nopasswd; apt-lists=removed; profile=euid"
        + (AptPackages.Count > 0 ? $"; apt={string.Join(',', AptPackages.Order(StringComparer.Ordinal))}" : "");

    public async Task PopulateAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken)
    {
        var mirror = DebianMirror.Find(Suite, SourcesFile);
        progress($"debootstrap --variant={Variant} {Suite} from {mirror}");
        var result = await ExternalCommand.RunAsync(
            Debootstrap,
            [$"--variant={Variant}", $"--include={string.Join(',', Packages)}", Suite, rootfs, mirror],
            cancellationToken,
            onLine: progress);
        if (!result.Succeeded)
        {
            var log = Path.Combine(rootfs, "debootstrap", "debootstrap.log");
            var tail = File.Exists(log) ? string.Join('\n', File.ReadLines(log).TakeLast(20)) : "";
            throw new InvalidOperationException($"debootstrap failed: {result.Describe()}\n{tail}");
        }

        if (AptPackages.Count > 0)
        {
            // apt's resolver (debootstrap's cannot order every dependency); the chroot uses the host's network and
            // the mirror debootstrap wrote into its sources.list.
            progress($"apt-get install {string.Join(' ', AptPackages)}");
            await ChrootAsync(rootfs, progress, cancellationToken, "/usr/bin/apt-get", "-q", "-o", "Acquire::Retries=3", "update");
            await ChrootAsync(rootfs, progress, cancellationToken, ["/usr/bin/env", "DEBIAN_FRONTEND=noninteractive", "/usr/bin/apt-get", "-q", "-y",
                "-o", "Acquire::Retries=3", "--no-install-recommends", "install", .. AptPackages]);
            await ChrootAsync(rootfs, progress, cancellationToken, "/usr/bin/apt-get", "clean");
        }

        // The account, as E2B's base has it: uid 1000, home /home/USER, bash, in group sudo, sudo without password.
        await ChrootAsync(rootfs, progress, cancellationToken, "/usr/sbin/useradd",
            "--create-home", "--shell", "/bin/bash", "--uid", UserId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--user-group", "--groups", "sudo", User);
        var sudoers = Path.Combine(rootfs, "etc", "sudoers.d", User);
        await File.WriteAllTextAsync(sudoers, $"{User} ALL=(ALL:ALL) NOPASSWD: ALL\n", cancellationToken);
        Files.ChangeMode(sudoers, 0b100_100_000); // 0440, as sudo requires of its files

        // Package lists are stale the day after the build and large; `apt-get update` fetches fresh ones.
        foreach (var dir in (string[])["var/lib/apt/lists", "var/cache/apt/archives"])
        {
            var full = Path.Combine(rootfs, dir);
            if (!Directory.Exists(full))
            {
                continue;
            }
            foreach (var file in Directory.EnumerateFiles(full))
            {
                if (Path.GetFileName(file) != "lock")
                {
                    File.Delete(file);
                }
            }
        }
        progress($"account '{User}' with passwordless sudo added");

        await LoginWithoutIdAsync(rootfs, progress, cancellationToken);
    }

    /// <summary>
    /// Every command the e2b SDKs send is <c>/bin/bash -l -c CMD</c>, and Debian's /etc/profile runs
    /// <c>"$(id -u)"</c> for a login shell: a fork and an exec before the user's command, each time. bash already knows
    /// the answer (<c>$EUID</c>, set at its start from geteuid, as id's is); a POSIX sh that lacks it still runs id.
    /// Measured in a gVisor sandbox, where a process start is the dearest thing a command does: the <c>id -u</c> was 55
    /// of the 75 ms <c>bash -l</c> added to <c>bash -c</c> (load 30, <c>PS4=$EPOCHREALTIME bash -lxc true</c>).
    /// </summary>
    internal static async Task LoginWithoutIdAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken)
    {
        const string Forking = "\"$(id -u)\"";
        const string Builtin = "\"${EUID:-$(id -u)}\"";
        var profile = Path.Combine(rootfs, "etc", "profile");
        if (!File.Exists(profile))
        {
            return;
        }
        var text = await File.ReadAllTextAsync(profile, cancellationToken);
        if (!text.Contains(Forking, StringComparison.Ordinal))
        {
            progress("/etc/profile does not run \"$(id -u)\"; left as it is");
            return;
        }
        await File.WriteAllTextAsync(profile, text.Replace(Forking, Builtin, StringComparison.Ordinal), cancellationToken);
        progress("/etc/profile: \"$(id -u)\" reads bash's $EUID first (one fork and exec less per login shell)");
    }

    private static async Task ChrootAsync(string rootfs, Action<string> progress, CancellationToken cancellationToken, params string[] command)
    {
        var result = await ExternalCommand.RunAsync("chroot", [rootfs, .. command], cancellationToken, onLine: progress);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"chroot {string.Join(' ', command)} failed: {result.Describe()}");
        }
    }
}
