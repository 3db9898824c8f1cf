namespace Paddock.Interpreter.Kernels;

/// <summary>
/// How a language's kernel is started. Every kernel speaks the Jupyter protocol over ZeroMQ: Python is Debian's
/// ipykernel; bash, JavaScript and TypeScript are small wrapper kernels written here on ipykernel's <c>Kernel</c> base
/// class (python/), driving a persistent bash and a persistent Node.js process (node/js-kernel.cjs). TypeScript is
/// the JavaScript kernel with each cell's types stripped first by the template's TypeScript compiler (Debian's
/// node-typescript, <c>transpileModule</c>): syntax errors are reported, type errors are not (no type check).
/// </summary>
internal sealed record KernelSpec(string Language, IReadOnlyList<string> Arguments, IReadOnlyDictionary<string, string> Environment)
{
    /// <summary>The languages a context may have, as <see cref="Normalize"/> returns them.</summary>
    public static IReadOnlyList<string> Languages { get; } = ["python", "javascript", "typescript", "bash"];

    /// <summary>
    /// E2B's spellings (contexts.py normalize_language: lowercase, trimmed, js → javascript, empty → python),
    /// plus ts for typescript and sh for bash; null for a language no kernel here runs.
    /// </summary>
    public static string? Normalize(string? language)
    {
        var l = (language ?? "").Trim().ToLowerInvariant();
        return l switch
        {
            "" or "python" or "python3" => "python",
            "js" or "javascript" or "node" => "javascript",
            "ts" or "typescript" => "typescript",
            "bash" or "sh" => "bash",
            _ => null,
        };
    }

    /// <summary>Set for the TypeScript kernel; the wrapper removes it from its environment before Node starts.</summary>
    public const string TypeScriptSwitch = "PADDOCK_JS_TYPESCRIPT";

    /// <summary>The spec of a normalized language; <paramref name="connectionFile"/> replaces {connection_file}.</summary>
    public static KernelSpec For(string language, string interpDirectory)
    {
        var python = Path.Combine(interpDirectory, "python");
        var env = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            // The extension and the wrapper kernels are imported from the bundle; paddock_display removes this from
            // os.environ again so that the user's own subprocesses do not inherit it.
            ["PYTHONPATH"] = python,
            ["PADDOCK_INTERP_DIR"] = interpDirectory,
            // Figures go to the notebook (display_data with image/png), not to a window.
            ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline",
            ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1",
        };
        return language switch
        {
            "python" => new(language, ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}",
                "--IPKernelApp.extensions=['paddock_display']", "--HistoryManager.enabled=False"], env),
            "bash" => new(language, ["python3", "-m", "paddock_bash_kernel", "-f", "{connection_file}"], env),
            "javascript" => new(language, ["python3", "-m", "paddock_js_kernel", "-f", "{connection_file}"], env),
            "typescript" => new(language, ["python3", "-m", "paddock_js_kernel", "-f", "{connection_file}"],
                new Dictionary<string, string>(env, StringComparer.Ordinal) { [TypeScriptSwitch] = "1" }),
            _ => throw new ArgumentException($"no kernel for language '{language}'", nameof(language)),
        };
    }
}
