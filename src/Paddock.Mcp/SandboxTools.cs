using System.ComponentModel;
using System.Globalization;
using System.Text;
using ModelContextProtocol.Server;
using Paddock.Client;

namespace Paddock.Mcp;

/// <summary>
/// The MCP tools: every call goes through <see cref="Sandbox"/> of Paddock.Client with the connection of
/// <see cref="IConnectionSource"/>, so a sandbox is an ordinary one of the caller's team: it outlives the tool call
/// and ends at its timeout like any other. A paused sandbox is resumed only by resume_sandbox (issue 18): the other
/// tools refuse it with a message that says so, instead of resuming it with the one-second connect they use.
/// </summary>
[McpServerToolType]
internal sealed class SandboxTools(IConnectionSource connections)
{
    /// <summary>The most of each stream a command's result carries: the first and last half of this, the rest in a file.</summary>
    internal const int OutputLimitBytes = 16 * 1024;

    /// <summary>The largest file read_file returns.</summary>
    internal const int ReadLimitBytes = 256 * 1024;

    /// <summary>How long a command may run unless the call says: 60 s (E2B's default command timeout).</summary>
    internal const int DefaultCommandTimeoutSeconds = 60;

    internal const int MaxCommandTimeoutSeconds = 3600;

    private ConnectionOptions Connection => connections.Current;

    [McpServerTool(Name = "create_sandbox", Title = "Create a sandbox", OpenWorld = false, UseStructuredContent = true)]
    [Description("Creates an isolated Linux sandbox (a Debian machine with bash, python3, node, git, curl; the default user is 'user' with passwordless sudo) and returns its id. The sandbox keeps running between tool calls until kill_sandbox or until its timeout passes; every other tool takes the id.")]
    public Task<SandboxCreated> CreateSandboxAsync(
        [Description("Template (image) to start from. Default 'base'.")] string? template = null,
        [Description("Seconds the sandbox lives before it is killed (extend it later with set_sandbox_timeout). Default 300.")] int? timeoutSeconds = null,
        [Description("Isolation tier: 'runc' (containers) or 'gvisor' (user-space kernel, stronger isolation). Default: the server's.")] string? isolation = null,
        [Description("Whether the sandbox may reach the internet. Default: the server's (usually true).")] bool? allowInternetAccess = null,
        [Description("Egress allowed even when internet access is off: CIDRs (10.0.0.0/8), addresses or domain names.")] string[]? allowOut = null,
        [Description("Egress denied: CIDRs or addresses.")] string[]? denyOut = null,
        [Description("Environment variables for every process in the sandbox.")] Dictionary<string, string>? envs = null,
        CancellationToken cancellationToken = default)
    {
        if (timeoutSeconds is <= 0)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be positive, got {timeoutSeconds}");
        }
        if (isolation is not null && isolation is not ("runc" or "gvisor"))
        {
            throw ToolErrors.Invalid($"isolation must be 'runc' or 'gvisor', got '{isolation}'");
        }
        return ToolErrors.GuardAsync(null, async () =>
        {
            await using var sandbox = await Sandbox.CreateAsync(template ?? Sandbox.DefaultTemplate, new SandboxOptions
            {
                Connection = Connection,
                Timeout = TimeSpan.FromSeconds(timeoutSeconds ?? (int)SandboxOptions.DefaultTimeout.TotalSeconds),
                Isolation = isolation,
                AllowInternetAccess = allowInternetAccess,
                AllowOut = allowOut,
                DenyOut = denyOut,
                Envs = envs,
                KillOnDispose = false,
            }, cancellationToken);
            var info = await sandbox.GetInfoAsync(cancellationToken);
            return new SandboxCreated(sandbox.SandboxId, info.TemplateId, info.Alias, info.EndAt);
        });
    }

    [McpServerTool(Name = "list_sandboxes", Title = "List my sandboxes", ReadOnly = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Lists the running and paused sandboxes of this API key's team with their ids, templates, states and the time each running one will be killed.")]
    public Task<SandboxList> ListSandboxesAsync(CancellationToken cancellationToken = default) =>
        ToolErrors.GuardAsync(null, async () =>
        {
            var list = new List<SandboxSummary>();
            await foreach (var s in Sandbox.ListAsync(new SandboxListFilter { States = [SandboxState.Running, SandboxState.Paused] }, Connection, cancellationToken))
            {
                list.Add(new SandboxSummary(s.SandboxId, s.TemplateId, s.Alias, s.StartedAt, s.EndAt, s.Metadata, s.State == SandboxState.Paused ? "paused" : "running"));
                if (list.Count >= 1000)
                {
                    break; // a bounded answer; a team with more is not one an agent reads through
                }
            }
            return new SandboxList(list);
        });

    [McpServerTool(Name = "run_command", Title = "Run a shell command", OpenWorld = false, UseStructuredContent = true)]
    [Description("Runs a bash command in the sandbox and waits for it to finish; returns its exit code, stdout and stderr. " +
        "Each stream returned is at most 16 KiB (its first and last 8 KiB); when longer, the result says so and names the file in the sandbox holding all of it. " +
        "A command that runs past its timeout is killed (with its child processes) and the call fails with the output it had written. " +
        "Do not start servers that never exit this way: end the command with '&' and redirect its output (e.g. 'python3 -m http.server 8000 >/tmp/http.log 2>&1 &').")]
    public Task<CommandRun> RunCommandAsync(
        [Description("The sandbox's id (from create_sandbox).")] string sandboxId,
        [Description("The bash command line, e.g. 'python3 -c \"print(6*7)\"' or 'cd /app && npm test'.")] string command,
        [Description("Seconds the command may run before it is killed. Default 60, at most 3600.")] int? timeoutSeconds = null,
        [Description("User to run as: 'user' (default) or 'root'.")] string? user = null,
        [Description("Working directory. Default: the user's home.")] string? cwd = null,
        [Description("Extra environment variables for this command.")] Dictionary<string, string>? envs = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (string.IsNullOrWhiteSpace(command))
        {
            throw ToolErrors.Invalid("command is empty");
        }
        var timeout = timeoutSeconds ?? DefaultCommandTimeoutSeconds;
        if (timeout is < 1 or > MaxCommandTimeoutSeconds)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be from 1 to {MaxCommandTimeoutSeconds}, got {timeout}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            return await CommandRunner.RunAsync(sandbox, command, TimeSpan.FromSeconds(timeout), user ?? "user", cwd, envs, cancellationToken);
        });
    }

    [McpServerTool(Name = "run_code", Title = "Run code in a notebook kernel", OpenWorld = false, UseStructuredContent = true)]
    [Description("Runs code in the sandbox's code interpreter (a Jupyter kernel that keeps variables between calls, as E2B's run_code does) and returns stdout, stderr, the results (text of each, and which rich formats such as png or html exist) and the error if one was raised. " +
        "Needs a sandbox created from a code-interpreter template; in one without it the call fails and says so: use run_command with 'python3 -c ...' there.")]
    public Task<CodeRun> RunCodeAsync(
        [Description("The sandbox's id (from create_sandbox).")] string sandboxId,
        [Description("The code to run.")] string code,
        [Description("Language of the kernel: 'python' (default), or another the template has (e.g. 'javascript', 'r').")] string? language = null,
        [Description("A context id (kernel) to run in; default: the default kernel of the language.")] string? contextId = null,
        [Description("Seconds the code may run. Default 60, at most 3600.")] int? timeoutSeconds = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (string.IsNullOrEmpty(code))
        {
            throw ToolErrors.Invalid("code is empty");
        }
        var timeout = timeoutSeconds ?? DefaultCommandTimeoutSeconds;
        if (timeout is < 1 or > MaxCommandTimeoutSeconds)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be from 1 to {MaxCommandTimeoutSeconds}, got {timeout}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            return await CodeInterpreter.RunAsync(sandbox, code, language, contextId, TimeSpan.FromSeconds(timeout), cancellationToken);
        });
    }

    [McpServerTool(Name = "read_file", Title = "Read a file", ReadOnly = true, OpenWorld = false)]
    [Description("Reads a text file from the sandbox (at most 256 KiB; a binary file is refused with its size: use run_command with base64 or xxd for those).")]
    public Task<string> ReadFileAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Absolute path, or relative to the user's home.")] string path,
        [Description("User whose permissions apply: 'user' (default) or 'root'.")] string? user = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        RequirePath(path);
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            var options = new FilesystemOptions { User = user };
            var info = await sandbox.Files.GetInfoAsync(path, options, cancellationToken);
            if (info.Type == FileType.Directory)
            {
                throw ToolErrors.Invalid($"'{info.Path}' is a directory: use list_files");
            }
            if (info.Size > ReadLimitBytes)
            {
                throw ToolErrors.Invalid($"'{info.Path}' is {info.Size} bytes, more than read_file returns ({ReadLimitBytes}): read parts of it with run_command (head, tail, sed -n, grep)");
            }
            var bytes = await sandbox.Files.ReadBytesAsync(path, options, cancellationToken);
            if (bytes.AsSpan().Contains((byte)0) || !IsUtf8(bytes))
            {
                throw ToolErrors.Invalid($"'{info.Path}' is a binary file of {bytes.Length} bytes: inspect it with run_command (file, xxd, base64)");
            }
            return Encoding.UTF8.GetString(bytes);
        });
    }

    [McpServerTool(Name = "write_file", Title = "Write a file", OpenWorld = false, UseStructuredContent = true)]
    [Description("Writes a text file in the sandbox, replacing it if it exists and creating missing parent directories.")]
    public Task<FileWritten> WriteFileAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Absolute path, or relative to the user's home.")] string path,
        [Description("The whole content of the file.")] string content,
        [Description("User who owns the file: 'user' (default) or 'root'.")] string? user = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        RequirePath(path);
        ArgumentNullException.ThrowIfNull(content);
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            var written = await sandbox.Files.WriteAsync(path, content, new FilesystemOptions { User = user }, cancellationToken);
            return new FileWritten(written.Path, Encoding.UTF8.GetByteCount(content));
        });
    }

    [McpServerTool(Name = "list_files", Title = "List a directory", ReadOnly = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Lists a directory of the sandbox: name, type (file, dir, symlink), size and path of each entry.")]
    public Task<FileList> ListFilesAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Directory: absolute, or relative to the user's home. Default: the home directory.")] string? path = null,
        [Description("How many levels deep to list, 1 (default) to 3.")] int? depth = null,
        [Description("User whose permissions apply: 'user' (default) or 'root'.")] string? user = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        var levels = depth ?? 1;
        if (levels is < 1 or > 3)
        {
            throw ToolErrors.Invalid($"depth must be from 1 to 3, got {levels}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            var entries = await sandbox.Files.ListAsync(string.IsNullOrEmpty(path) ? "." : path, levels, new FilesystemOptions { User = user }, cancellationToken);
            const int MaxEntries = 1000;
            return new FileList(
                [.. entries.Take(MaxEntries).Select(e => new FileEntry(e.Name, TypeName(e.Type), e.Size, e.Path))],
                entries.Count > MaxEntries ? $"{entries.Count} entries; the first {MaxEntries} are listed" : null);
        });
    }

    [McpServerTool(Name = "get_port_url", Title = "Expose a port", ReadOnly = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Returns the URL at which a TCP port of the sandbox is reachable over HTTP from outside it (start a server listening on 0.0.0.0 or 127.0.0.1 at that port first, e.g. with run_command 'python3 -m http.server 8000 >/tmp/http.log 2>&1 &').")]
    public Task<PortUrl> GetPortUrlAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("The port a server in the sandbox listens on, 1-65535.")] int port,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (port is < 1 or > 65535)
        {
            throw ToolErrors.Invalid($"port must be from 1 to 65535, got {port}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await ConnectAsync(sandboxId, cancellationToken);
            // The preview hosts are served the way the API is: plain HTTP by a local paddockd, HTTPS by one with TLS
            // (and by E2B's cloud).
            var scheme = sandbox.Connection.Debug ? "http" : sandbox.Connection.ApiUrl.Scheme;
            return new PortUrl($"{scheme}://{sandbox.GetHost(port)}/", port);
        });
    }

    [McpServerTool(Name = "set_sandbox_timeout", Title = "Set a sandbox's timeout", Idempotent = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Sets how long from now the sandbox lives before it is killed (extends or shortens it).")]
    public Task<SandboxTimeoutSet> SetSandboxTimeoutAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Seconds from now.")] int timeoutSeconds,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (timeoutSeconds <= 0)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be positive, got {timeoutSeconds}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await Sandbox.SetTimeoutAsync(sandboxId, TimeSpan.FromSeconds(timeoutSeconds), Connection, cancellationToken);
            var info = await Sandbox.GetInfoAsync(sandboxId, Connection, cancellationToken);
            return new SandboxTimeoutSet(sandboxId, info.EndAt);
        });
    }

    [McpServerTool(Name = "kill_sandbox", Title = "Kill a sandbox", Destructive = true, Idempotent = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Kills the sandbox now; everything in it is lost.")]
    public Task<SandboxKilled> KillSandboxAsync(
        [Description("The sandbox's id.")] string sandboxId,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            if (!await Sandbox.KillAsync(sandboxId, Connection, cancellationToken))
            {
                throw new SandboxNotFoundException(sandboxId, $"sandbox {sandboxId} not found");
            }
            return new SandboxKilled(sandboxId, true);
        });
    }

    [McpServerTool(Name = "pause_sandbox", Title = "Pause a sandbox", Idempotent = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Pauses the sandbox: it stops using CPU and memory until resume_sandbox. With keepMemory true (the default where the " +
        "sandbox's isolation tier can: gvisor) its processes go on where they stopped; with false (or on runc) only its files are kept " +
        "and a resume starts it afresh.")]
    public Task<SandboxPaused> PauseSandboxAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Keep memory and processes (true) or only files (false); default: what the sandbox's tier keeps.")] bool? keepMemory = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            var paused = await Sandbox.PauseAsync(sandboxId, keepMemory, Connection, cancellationToken);
            return new SandboxPaused(sandboxId, true, paused ? null : "it was paused already");
        });
    }

    [McpServerTool(Name = "resume_sandbox", Title = "Resume a paused sandbox", Idempotent = true, OpenWorld = false, UseStructuredContent = true)]
    [Description("Resumes a paused sandbox under the same id (a running one only gets its timeout extended); it then lives timeoutSeconds from now.")]
    public Task<SandboxResumed> ResumeSandboxAsync(
        [Description("The sandbox's id.")] string sandboxId,
        [Description("Seconds it lives from now (default 300).")] int? timeoutSeconds = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (timeoutSeconds is <= 0)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be positive, got {timeoutSeconds}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            await using var sandbox = await Sandbox.ResumeAsync(sandboxId, new SandboxConnectOptions
            {
                Connection = Connection,
                Timeout = timeoutSeconds is { } s ? TimeSpan.FromSeconds(s) : null,
            }, cancellationToken);
            var info = await sandbox.GetInfoAsync(cancellationToken);
            return new SandboxResumed(sandboxId, info.EndAt);
        });
    }

    [McpServerTool(Name = "fork_sandbox", Title = "Fork a sandbox", Idempotent = false, OpenWorld = false, UseStructuredContent = true)]
    [Description("Forks a running sandbox into count new sandboxes (1-100), each with the source's memory, running processes and files " +
        "at one instant and its own id; the source keeps running. Each copy lives timeoutSeconds from when it runs. Only sandboxes on an " +
        "isolation tier with memory checkpoints (gvisor) can be forked. One entry per copy: its id, or why it did not start.")]
    public Task<SandboxForked> ForkSandboxAsync(
        [Description("The running sandbox's id.")] string sandboxId,
        [Description("How many copies (1-100, default 1).")] int count = 1,
        [Description("Seconds each copy lives once it runs (default: the server's).")] int? timeoutSeconds = null,
        CancellationToken cancellationToken = default)
    {
        RequireId(sandboxId);
        if (count is < 1 or > 100)
        {
            throw ToolErrors.Invalid($"count must be between 1 and 100, got {count}");
        }
        if (timeoutSeconds is <= 0)
        {
            throw ToolErrors.Invalid($"timeoutSeconds must be positive, got {timeoutSeconds}");
        }
        return ToolErrors.GuardAsync(sandboxId, async () =>
        {
            var results = await Sandbox.ForkAsync(sandboxId, count, timeoutSeconds is { } s ? TimeSpan.FromSeconds(s) : null, Connection, killOnDispose: false, cancellationToken);
            var copies = new List<ForkedSandbox>();
            foreach (var result in results)
            {
                if (result.Sandbox is { } copy)
                {
                    copies.Add(new ForkedSandbox(copy.SandboxId, null));
                    await copy.DisposeAsync();
                }
                else
                {
                    copies.Add(new ForkedSandbox(null, result.Error?.Message ?? "it did not start"));
                }
            }
            return new SandboxForked(sandboxId, copies);
        });
    }

    /// <summary>
    /// A client for a running sandbox. The connect call asks for a timeout of one second, which never shortens one
    /// (paddockd and E2B only extend on connect): a tool call does not change when the sandbox ends.
    /// </summary>
    private async Task<Sandbox> ConnectAsync(string sandboxId, CancellationToken cancellationToken)
    {
        // A connect resumes a paused sandbox with the timeout it names (E2B's connect): one second would end it at once.
        if ((await Sandbox.GetInfoAsync(sandboxId, Connection, cancellationToken)).State == SandboxState.Paused)
        {
            throw ToolErrors.Invalid($"sandbox {sandboxId} is paused: call resume_sandbox first");
        }
        return await Sandbox.ConnectAsync(sandboxId, new SandboxConnectOptions { Connection = Connection, Timeout = TimeSpan.FromSeconds(1) }, cancellationToken);
    }

    private static void RequireId(string sandboxId)
    {
        if (string.IsNullOrWhiteSpace(sandboxId))
        {
            throw ToolErrors.Invalid("sandboxId is empty: pass the id create_sandbox returned (list_sandboxes shows the running ones)");
        }
    }

    private static void RequirePath(string path)
    {
        if (string.IsNullOrEmpty(path))
        {
            throw ToolErrors.Invalid("path is empty");
        }
    }

    private static bool IsUtf8(byte[] bytes) => System.Text.Unicode.Utf8.IsValid(bytes);

    private static string TypeName(FileType type) => type switch
    {
        FileType.Directory => "dir",
        FileType.File => "file",
        _ => type.ToString().ToLowerInvariant(),
    };

    internal static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
}

/// <summary>create_sandbox's answer.</summary>
internal sealed record SandboxCreated(
    [property: Description("The sandbox's id: pass it to every other tool.")] string SandboxId,
    string TemplateId,
    string? Alias,
    [property: Description("When the sandbox will be killed unless its timeout is changed.")] DateTimeOffset EndAt);

internal sealed record SandboxSummary(string SandboxId, string TemplateId, string? Alias, DateTimeOffset StartedAt, DateTimeOffset EndAt, IReadOnlyDictionary<string, string> Metadata, string State);

/// <summary>list_sandboxes' answer.</summary>
internal sealed record SandboxList(IReadOnlyList<SandboxSummary> Sandboxes);

/// <summary>write_file's answer.</summary>
internal sealed record FileWritten(string Path, int Bytes);

internal sealed record FileEntry(string Name, string Type, long Size, string Path);

/// <summary>list_files' answer.</summary>
internal sealed record FileList(IReadOnlyList<FileEntry> Entries, string? Note);

/// <summary>get_port_url's answer.</summary>
internal sealed record PortUrl(string Url, int Port);

internal sealed record SandboxTimeoutSet(string SandboxId, DateTimeOffset EndAt);

internal sealed record SandboxKilled(string SandboxId, bool Killed);

/// <summary>pause_sandbox's answer; <paramref name="Note"/> says when nothing had to be done.</summary>
internal sealed record SandboxPaused(string SandboxId, bool Paused, string? Note);

/// <summary>resume_sandbox's answer.</summary>
internal sealed record SandboxResumed(string SandboxId, DateTimeOffset EndAt);


/// <summary>fork_sandbox's answer: one entry per copy, in order.</summary>
internal sealed record SandboxForked(string SourceId, IReadOnlyList<ForkedSandbox> Copies);

/// <summary>One copy of a fork: its id when it runs, else why it did not start.</summary>
internal sealed record ForkedSandbox(string? SandboxId, string? Error);
