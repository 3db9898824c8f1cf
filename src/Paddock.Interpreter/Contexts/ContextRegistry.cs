using System.Collections.Concurrent;
using System.Collections;
using Microsoft.Extensions.Logging;
using Paddock.Interpreter.Kernels;

namespace Paddock.Interpreter.Contexts;

/// <summary>
/// Every context of the sandbox, and one default context per language (what a call that names a language or
/// nothing runs in; E2B's default_websockets). The default python context is started with the server, the others on
/// first use.
/// </summary>
internal sealed class ContextRegistry : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, CodeContext> _contexts = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Lazy<Task<CodeContext>>> _defaults = new(StringComparer.Ordinal);
    private readonly string _interpDirectory;
    private readonly string _runtimeDirectory;
    private readonly IReadOnlyDictionary<string, string> _sandboxEnv;
    private readonly ILogger _logger;

    public ContextRegistry(string interpDirectory, string runtimeDirectory, string defaultCwd, ILogger logger)
    {
        _interpDirectory = interpDirectory;
        _runtimeDirectory = runtimeDirectory;
        DefaultCwd = defaultCwd;
        _logger = logger;
        // The sandbox's variables as the server was started with them (the template's start command gets the
        // create's envs); kernels inherit them, and a call's own variables are put back to these afterwards.
        _sandboxEnv = Environment.GetEnvironmentVariables().Cast<DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);
    }

    public string DefaultCwd { get; }

    public IReadOnlyList<ContextInfo> List() => _contexts.Values.Select(c => c.Info).OrderBy(c => c.Id, StringComparer.Ordinal).ToList();

    public CodeContext? Find(string id) => _contexts.TryGetValue(id, out var c) ? c : null;

    /// <summary>Creates a context and starts its kernel; <paramref name="language"/> is normalized already.</summary>
    public async Task<CodeContext> CreateAsync(string language, string cwd, CancellationToken cancellationToken)
    {
        var context = new CodeContext(Guid.NewGuid().ToString(), KernelSpec.For(language, _interpDirectory), cwd, _runtimeDirectory, _sandboxEnv, _logger);
        try
        {
            await context.StartAsync(cancellationToken);
        }
        catch
        {
            await context.DisposeAsync();
            throw;
        }
        _contexts[context.Id] = context;
        return context;
    }

    /// <summary>The default context of <paramref name="language"/>, created on first use (once, whoever asks first).</summary>
    public async Task<CodeContext> DefaultAsync(string language, CancellationToken cancellationToken)
    {
        var lazy = _defaults.GetOrAdd(language, l => new Lazy<Task<CodeContext>>(() => CreateAsync(l, DefaultCwd, CancellationToken.None)));
        try
        {
            var context = await lazy.Value.WaitAsync(cancellationToken);
            if (_contexts.ContainsKey(context.Id))
            {
                return context;
            }
        }
        catch (IOException)
        {
            // Failed to start: the next call tries again.
        }
        // Removed by the client or failed: a new default on the next call.
        _defaults.TryUpdate(language, new Lazy<Task<CodeContext>>(() => CreateAsync(language, DefaultCwd, CancellationToken.None)), lazy);
        return await _defaults[language].Value.WaitAsync(cancellationToken);
    }

    public async Task<bool> RemoveAsync(string id)
    {
        if (!_contexts.TryRemove(id, out var context))
        {
            return false;
        }
        await context.DisposeAsync();
        return true;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var id in _contexts.Keys.ToList())
        {
            await RemoveAsync(id);
        }
    }
}
