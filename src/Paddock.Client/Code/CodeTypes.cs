using System.Text.Json;

namespace Paddock.Client;

/// <summary>A code interpreter context: one kernel with its own state, language and working directory.</summary>
/// <param name="Id">The context's id.</param>
/// <param name="Language">python, javascript or bash.</param>
/// <param name="Cwd">Its working directory.</param>
public sealed record CodeContext(string Id, string Language, string Cwd);

/// <summary>An exception a cell raised (or a failure of its kernel).</summary>
/// <param name="Name">The exception's type name ("ZeroDivisionError"; "KernelDied" when the kernel exited).</param>
/// <param name="Value">Its message.</param>
/// <param name="Traceback">The traceback as the kernel formatted it (with ANSI colours for Python).</param>
public sealed record ExecutionError(string Name, string Value, string Traceback);

/// <summary>
/// One result of a cell: the value of its last expression (<see cref="IsMainResult"/>) or something it displayed
/// (a figure, a table). Each format is present when the kernel gave it.
/// </summary>
public sealed record ExecutionResult
{
    /// <summary>Whether this is the value of the cell's last expression (there is at most one).</summary>
    public bool IsMainResult { get; init; }

    /// <summary>text/plain.</summary>
    public string? Text { get; init; }

    /// <summary>text/html.</summary>
    public string? Html { get; init; }

    /// <summary>text/markdown.</summary>
    public string? Markdown { get; init; }

    /// <summary>image/svg+xml.</summary>
    public string? Svg { get; init; }

    /// <summary>image/png, base64.</summary>
    public string? Png { get; init; }

    /// <summary>image/jpeg, base64.</summary>
    public string? Jpeg { get; init; }

    /// <summary>application/pdf, base64.</summary>
    public string? Pdf { get; init; }

    /// <summary>text/latex.</summary>
    public string? Latex { get; init; }

    /// <summary>application/javascript.</summary>
    public string? Javascript { get; init; }

    /// <summary>application/json.</summary>
    public JsonElement? Json { get; init; }

    /// <summary>A pandas DataFrame as <c>{column: [values]}</c>.</summary>
    public JsonElement? Data { get; init; }

    /// <summary>A matplotlib figure as E2B's chart object (type, axes, elements).</summary>
    public JsonElement? Chart { get; init; }

    /// <summary>Formats without a field of their own, by mime type.</summary>
    public IReadOnlyDictionary<string, JsonElement> Extra { get; init; } = new Dictionary<string, JsonElement>();
}

/// <summary>What a cell did: its output, results, error and execution count.</summary>
public sealed record Execution
{
    /// <summary>Results in the order they came.</summary>
    public IReadOnlyList<ExecutionResult> Results { get; init; } = [];

    /// <summary>stdout, in the chunks the kernel sent.</summary>
    public IReadOnlyList<string> Stdout { get; init; } = [];

    /// <summary>stderr, in the chunks the kernel sent.</summary>
    public IReadOnlyList<string> Stderr { get; init; } = [];

    /// <summary>The cell's error, if it failed.</summary>
    public ExecutionError? Error { get; init; }

    /// <summary>The kernel's execution counter for this cell.</summary>
    public int? ExecutionCount { get; init; }

    /// <summary>The text of the main result, if the cell had one.</summary>
    public string? Text => Results.FirstOrDefault(r => r.IsMainResult)?.Text;
}

/// <summary>Called as a cell's output arrives (on the thread reading the response; keep them short).</summary>
public sealed record ExecutionCallbacks
{
    /// <summary>A chunk of stdout.</summary>
    public Action<string>? OnStdout { get; init; }

    /// <summary>A chunk of stderr.</summary>
    public Action<string>? OnStderr { get; init; }

    /// <summary>A result.</summary>
    public Action<ExecutionResult>? OnResult { get; init; }

    /// <summary>The cell's error.</summary>
    public Action<ExecutionError>? OnError { get; init; }
}
