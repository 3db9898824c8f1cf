using System.Runtime.CompilerServices;
using System.Text;

namespace Paddock.Client.Commands;

/// <summary>
/// Every piece of a command's output, kept in order, so that any number of readers can iterate it from the start
/// (none misses what arrived before it began) while <see cref="CommandHandle.Stdout"/> sees all of it too.
/// One writer (the handle's pump), many readers.
/// </summary>
internal sealed class OutputLog
{
    private readonly object _gate = new();
    private readonly List<CommandOutput> _items = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private bool _completed;
    private Exception? _error;

    public void Add(CommandOutput item)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _items.Add(item);
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    public void Complete(Exception? error)
    {
        TaskCompletionSource changed;
        lock (_gate)
        {
            _completed = true;
            _error = error;
            changed = _changed;
        }
        changed.TrySetResult();
    }

    public string Text(OutputStream stream)
    {
        var text = new StringBuilder();
        lock (_gate)
        {
            foreach (var item in _items)
            {
                if (item.Stream == stream)
                {
                    text.Append(item.Text);
                }
            }
        }
        return text.ToString();
    }

    public async IAsyncEnumerable<CommandOutput> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var next = 0;
        while (true)
        {
            Task changed;
            CommandOutput? item = null;
            lock (_gate)
            {
                if (next < _items.Count)
                {
                    item = _items[next++];
                    changed = Task.CompletedTask;
                }
                else if (_completed)
                {
                    if (_error is not null)
                    {
                        throw _error;
                    }
                    yield break;
                }
                else
                {
                    changed = _changed.Task;
                }
            }
            if (item is not null)
            {
                yield return item;
            }
            else
            {
                await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }
}
