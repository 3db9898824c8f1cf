namespace Paddock.Client;

/// <summary>The kinds of build step E2B's template build API takes (its <c>TemplateStep.type</c>).</summary>
public enum TemplateStepKind
{
    /// <summary>A shell command; its filesystem changes become a layer. Args: [command, user?].</summary>
    Run,

    /// <summary>Files from the build context. Args: [source, destination, owner?, mode?].</summary>
    Copy,

    /// <summary>Environment for later steps and for the template's sandboxes. Args: [name, value, name, value, ...].</summary>
    Env,

    /// <summary>The working directory of later steps and of the template's sandboxes (created). Args: [directory].</summary>
    Workdir,

    /// <summary>The user later steps and the template's sandboxes run as. Args: [user].</summary>
    User,
}

/// <summary>One build step, as it goes on the wire.</summary>
public sealed record TemplateStep
{
    /// <summary>What the step does.</summary>
    public required TemplateStepKind Kind { get; init; }

    /// <summary>The step's arguments, in the order <see cref="TemplateStepKind"/> describes.</summary>
    public required IReadOnlyList<string> Args { get; init; }

    /// <summary>Rebuild this step even when the server has it cached.</summary>
    public bool Force { get; init; }

    /// <summary>The Dockerfile line the step came from, when it came from one (for messages).</summary>
    public int? Line { get; init; }

    /// <summary>The API's name of the kind: RUN, COPY, ENV, WORKDIR, USER.</summary>
    public string TypeName => Kind.ToString().ToUpperInvariant();

    /// <inheritdoc/>
    public override string ToString() => $"{TypeName} {string.Join(' ', Args)}";
}

/// <summary>
/// A template definition in code, E2B's <c>Template()</c> builder: where it starts (a template, the Debian base, an
/// image, or nothing), its steps, and the start command its sandboxes run. Build it with
/// <see cref="Templates.BuildAsync(TemplateBuilder, string, TemplateBuildOptions?, ConnectionOptions?, CancellationToken)"/>.
/// Each call returns the same builder, so calls chain.
/// </summary>
public sealed class TemplateBuilder
{
    /// <summary>The image name E2B's SDKs send for their Debian-based default (this host's <c>base</c>).</summary>
    public const string BaseImage = "e2bdev/base";

    /// <summary>The image name for an empty root filesystem (Docker's <c>FROM scratch</c>).</summary>
    public const string ScratchImage = "scratch";

    private readonly List<TemplateStep> _steps = [];

    private TemplateBuilder(string? fromTemplate, string? fromImage)
    {
        FromTemplateName = fromTemplate;
        FromImageName = fromImage;
    }

    /// <summary>The template the build starts from (its id or name), or null when it starts from an image.</summary>
    public string? FromTemplateName { get; }

    /// <summary>The image the build starts from, or null when it starts from a template.</summary>
    public string? FromImageName { get; }

    /// <summary>The steps, in order.</summary>
    public IReadOnlyList<TemplateStep> Steps => _steps;

    /// <summary>The command every sandbox of the template starts with, detached; null: none.</summary>
    public string? StartCommand { get; private set; }

    /// <summary>Run after the start command until it exits 0; the sandbox's create returns then.</summary>
    public string? ReadyCommand { get; private set; }

    /// <summary>The directory COPY sources are relative to; null: the current directory at build time.</summary>
    public string? ContextDirectory { get; private set; }

    /// <summary>What a Dockerfile had that does not change the result (EXPOSE, LABEL, ...), one line each.</summary>
    public IReadOnlyList<string> Warnings { get; internal set; } = [];

    /// <summary>Starts from a template of this host (its id or name), or an image imported as one.</summary>
    public static TemplateBuilder FromTemplate(string templateIdOrName)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(templateIdOrName);
        return new TemplateBuilder(templateIdOrName, null);
    }

    /// <summary>Starts from the Debian base (E2B's <c>fromBaseImage()</c>; this host's <c>base</c>).</summary>
    public static TemplateBuilder FromBaseImage() => new(null, BaseImage);

    /// <summary>Starts from an image by reference (what the server can resolve: the base names, or <c>scratch</c>).</summary>
    public static TemplateBuilder FromImage(string image)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(image);
        return new TemplateBuilder(null, image);
    }

    /// <summary>Starts from an empty root filesystem: COPY works, RUN does not until a shell has been copied in.</summary>
    public static TemplateBuilder FromScratch() => new(null, ScratchImage);

    /// <summary>
    /// A template from a Dockerfile's text (the subset <see cref="Dockerfile"/> describes). Throws
    /// <see cref="DockerfileException"/>, with the line, for what it cannot take.
    /// </summary>
    /// <param name="text">The Dockerfile's content.</param>
    /// <param name="buildArgs">Values for its ARGs (<c>--build-arg</c>), overriding their defaults.</param>
    /// <param name="contextDirectory">The directory COPY sources are relative to.</param>
    public static TemplateBuilder FromDockerfile(string text, IReadOnlyDictionary<string, string>? buildArgs = null, string? contextDirectory = null)
    {
        var template = Dockerfile.Parse(text, buildArgs);
        if (contextDirectory is not null)
        {
            template.WithContext(contextDirectory);
        }
        return template;
    }

    /// <summary>Sets the directory COPY sources are relative to.</summary>
    public TemplateBuilder WithContext(string directory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        ContextDirectory = directory;
        return this;
    }

    /// <summary>Runs a shell command, as <paramref name="user"/> or the build's current user.</summary>
    public TemplateBuilder Run(string command, string? user = null) =>
        Add(TemplateStepKind.Run, user is null ? [command] : [command, user]);

    /// <summary>
    /// Copies <paramref name="source"/> (a path or glob relative to the context) to <paramref name="destination"/>
    /// (relative to the working directory when not absolute), owned by <paramref name="owner"/> (user or user:group;
    /// default: the build's current user), with <paramref name="mode"/> (octal, e.g. "755") when given.
    /// </summary>
    public TemplateBuilder Copy(string source, string destination, string? owner = null, string? mode = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(source);
        ArgumentException.ThrowIfNullOrWhiteSpace(destination);
        if (mode is not null && (mode.Length is 0 or > 4 || !mode.All(c => c is >= '0' and <= '7')))
        {
            throw new ArgumentException($"mode '{mode}' is not an octal file mode", nameof(mode));
        }
        return Add(TemplateStepKind.Copy, mode is not null ? [source, destination, owner ?? "", mode] : owner is not null ? [source, destination, owner] : [source, destination]);
    }

    /// <summary>Sets environment variables for later steps and for the template's sandboxes.</summary>
    public TemplateBuilder SetEnvs(IEnumerable<KeyValuePair<string, string>> variables)
    {
        var args = new List<string>();
        foreach (var (name, value) in variables)
        {
            if (string.IsNullOrEmpty(name) || name.Contains('=', StringComparison.Ordinal))
            {
                throw new ArgumentException($"'{name}' cannot name an environment variable", nameof(variables));
            }
            args.Add(name);
            args.Add(value);
        }
        return args.Count == 0 ? this : Add(TemplateStepKind.Env, args);
    }

    /// <summary>Sets (and creates) the working directory of later steps and of the template's sandboxes.</summary>
    public TemplateBuilder SetWorkdir(string directory) => Add(TemplateStepKind.Workdir, [directory]);

    /// <summary>Sets the user later steps and the template's sandboxes run as.</summary>
    public TemplateBuilder SetUser(string user) => Add(TemplateStepKind.User, [user]);

    /// <summary>
    /// The command every sandbox of the template starts with (a shell command line), and optionally a check run
    /// until it exits 0 before a sandbox's create returns.
    /// </summary>
    public TemplateBuilder SetStartCommand(string command, string? readyCommand = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(command);
        StartCommand = command;
        ReadyCommand = readyCommand;
        return this;
    }

    internal TemplateBuilder Add(TemplateStepKind kind, IReadOnlyList<string> args, int? line = null)
    {
        if (args.Count == 0 || string.IsNullOrEmpty(args[0]))
        {
            throw new ArgumentException($"a {kind} step needs a value");
        }
        _steps.Add(new TemplateStep { Kind = kind, Args = args, Line = line });
        return this;
    }
}
