namespace Paddock.Agent.Hosting;

/// <summary>
/// The agent's loggers: warnings and worse to standard output, in the console logger's simple format
/// (<c>warn: Category[EventId]</c>, then the message indented on the next line).
/// </summary>
/// <remarks>
/// Why not <c>LoggerFactory.Create(b =&gt; b.AddSimpleConsole())</c>: that builds a dependency-injection container
/// of options, formatters and their open generic types at start, the cost <see cref="AgentRoutes"/> takes the host
/// away to avoid. The agent logs rarely (refusals, failures), so a synchronous write under a lock is enough.
/// </remarks>
internal sealed class AgentLoggerFactory : ILoggerFactory
{
    private readonly LogLevel _minimum;
    private readonly TextWriter _output;
    private readonly Lock _gate = new();

    public AgentLoggerFactory(LogLevel minimum, TextWriter output)
    {
        _minimum = minimum;
        _output = output;
    }

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void AddProvider(ILoggerProvider provider) =>
        throw new NotSupportedException("the agent's logging has one fixed sink (standard output)");

    public void Dispose()
    {
    }

    private void Write(LogLevel level, string category, EventId eventId, string message, Exception? exception)
    {
        var text = new System.Text.StringBuilder();
        text.Append(Label(level)).Append(": ").Append(category).Append('[').Append(eventId.Id).Append(']').Append('\n');
        Indent(text, message);
        if (exception is not null)
        {
            Indent(text, exception.ToString());
        }
        lock (_gate)
        {
            _output.Write(text.ToString());
            _output.Flush();
        }
    }

    private static void Indent(System.Text.StringBuilder text, string lines)
    {
        foreach (var line in lines.Split('\n'))
        {
            text.Append("      ").Append(line.TrimEnd('\r')).Append('\n');
        }
    }

    private static string Label(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        LogLevel.Critical => "crit",
        _ => level.ToString(),
    };

    private sealed class Logger(AgentLoggerFactory factory, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= factory._minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                factory.Write(logLevel, category, eventId, formatter(state, exception), exception);
            }
        }
    }
}
