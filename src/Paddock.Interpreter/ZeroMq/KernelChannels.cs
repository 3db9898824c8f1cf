using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Paddock.Interpreter.Jupyter;
using Paddock.Interpreter.Native;

namespace Paddock.Interpreter.ZeroMq;

/// <summary>Which of a kernel's sockets a request goes to.</summary>
internal enum KernelChannel
{
    Shell,
    Control,
}

/// <summary>
/// A kernel's shell and control (DEALER) and iopub (SUB, everything) sockets, owned by one thread: libzmq sockets
/// are not thread-safe. Sends are queued and the thread woken through an eventfd that zmq_poll watches beside the
/// sockets, so a request leaves at once instead of at the next poll timeout. Received messages are parsed and
/// signature-checked on that thread and handed to the callback, which must not block.
/// </summary>
internal sealed unsafe class KernelChannels : IDisposable
{
    private readonly MessageSigner _signer;
    private readonly Action<JupyterMessage> _onMessage;
    private readonly Action<string> _onProblem;
    private readonly ConcurrentQueue<(KernelChannel Channel, IReadOnlyList<byte[]> Frames)> _outgoing = new();
    private readonly int _wakeFd;
    private readonly nint _context;
    private readonly nint _shell;
    private readonly nint _control;
    private readonly nint _iopub;
    private readonly Thread _thread;
    private volatile bool _stopping;

    public KernelChannels(KernelConnectionInfo info, MessageSigner signer, Action<JupyterMessage> onMessage, Action<string> onProblem)
    {
        _signer = signer;
        _onMessage = onMessage;
        _onProblem = onProblem;
        _wakeFd = Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK);
        if (_wakeFd < 0)
        {
            throw new IOException($"eventfd failed: errno {Marshal.GetLastPInvokeError()}");
        }
        _context = ZmqNative.zmq_ctx_new();
        if (_context == 0)
        {
            Libc.close(_wakeFd);
            throw new IOException($"zmq_ctx_new failed: {ZmqNative.LastError()}");
        }
        _shell = Open(ZmqNative.ZMQ_DEALER, info.Endpoint(info.ShellPort));
        _control = Open(ZmqNative.ZMQ_DEALER, info.Endpoint(info.ControlPort));
        _iopub = Open(ZmqNative.ZMQ_SUB, info.Endpoint(info.IopubPort));
        Check(ZmqNative.zmq_setsockopt(_iopub, ZmqNative.ZMQ_SUBSCRIBE, null, 0), "subscribe");
        _thread = new Thread(Run) { IsBackground = true, Name = "zmq " + info.ShellPort };
        _thread.Start();
    }

    /// <summary>Queues a message for the kernel and wakes the socket thread.</summary>
    public void Send(KernelChannel channel, IReadOnlyList<byte[]> frames)
    {
        if (_stopping)
        {
            throw new ObjectDisposedException(nameof(KernelChannels));
        }
        _outgoing.Enqueue((channel, frames));
        Wake();
    }

    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }
        _stopping = true;
        Wake();
        // The thread closes the sockets and the context; a bounded wait: zmq_poll returns within its 1 s timeout.
        _thread.Join(TimeSpan.FromSeconds(5));
    }

    private void Wake()
    {
        ulong one = 1;
        // EAGAIN means the counter is already non-zero: the thread is woken anyway.
        Libc.write(_wakeFd, &one, 8);
    }

    private nint Open(int type, string endpoint)
    {
        var socket = ZmqNative.zmq_socket(_context, type);
        if (socket == 0)
        {
            throw new IOException($"zmq_socket failed: {ZmqNative.LastError()}");
        }
        // A closed socket drops what it has not sent instead of holding the context's termination.
        var linger = 0;
        Check(ZmqNative.zmq_setsockopt(socket, ZmqNative.ZMQ_LINGER, &linger, sizeof(int)), "linger");
        Check(ZmqNative.zmq_connect(socket, endpoint), "connect " + endpoint);
        return socket;
    }

    private static void Check(int rc, string what)
    {
        if (rc != 0)
        {
            throw new IOException($"zmq {what} failed: {ZmqNative.LastError()}");
        }
    }

    private void Run()
    {
        var items = stackalloc ZmqNative.PollItem[4];
        items[0] = new() { Socket = _iopub, Events = ZmqNative.ZMQ_POLLIN };
        items[1] = new() { Socket = _shell, Events = ZmqNative.ZMQ_POLLIN };
        items[2] = new() { Socket = _control, Events = ZmqNative.ZMQ_POLLIN };
        items[3] = new() { Socket = 0, Fd = _wakeFd, Events = ZmqNative.ZMQ_POLLIN };
        try
        {
            while (!_stopping)
            {
                var ready = ZmqNative.zmq_poll(items, 4, 1000);
                if (ready < 0)
                {
                    if (ZmqNative.zmq_errno() == ZmqNative.EINTR)
                    {
                        continue;
                    }
                    _onProblem($"zmq_poll failed: {ZmqNative.LastError()}");
                    return;
                }
                if ((items[3].Revents & ZmqNative.ZMQ_POLLIN) != 0)
                {
                    ulong count;
                    Libc.read(_wakeFd, &count, 8);
                }
                while (_outgoing.TryDequeue(out var send))
                {
                    SendFrames(send.Channel == KernelChannel.Shell ? _shell : _control, send.Frames);
                }
                // iopub first: a cell's output precedes its execute_reply in the kernel, keep that order here too.
                for (var i = 0; i < 3; i++)
                {
                    if ((items[i].Revents & ZmqNative.ZMQ_POLLIN) != 0)
                    {
                        ReceiveAll(items[i].Socket);
                    }
                }
            }
        }
        finally
        {
            ZmqNative.zmq_close(_shell);
            ZmqNative.zmq_close(_control);
            ZmqNative.zmq_close(_iopub);
            ZmqNative.zmq_ctx_term(_context);
            Libc.close(_wakeFd);
        }
    }

    private void SendFrames(nint socket, IReadOnlyList<byte[]> frames)
    {
        for (var i = 0; i < frames.Count; i++)
        {
            var flags = i < frames.Count - 1 ? ZmqNative.ZMQ_SNDMORE : 0;
            fixed (byte* data = frames[i])
            {
                while (ZmqNative.zmq_send(socket, data, (nuint)frames[i].Length, flags) < 0)
                {
                    if (ZmqNative.zmq_errno() != ZmqNative.EINTR)
                    {
                        _onProblem($"zmq_send failed: {ZmqNative.LastError()}");
                        return;
                    }
                }
            }
        }
    }

    /// <summary>Receives every message waiting on <paramref name="socket"/> (zmq_poll is level-triggered, but one pass is cheaper).</summary>
    private void ReceiveAll(nint socket)
    {
        while (ReceiveOne(socket) is { } frames)
        {
            var message = JupyterMessage.Parse(_signer, frames, out var error);
            if (message is null)
            {
                _onProblem(error!);
                continue;
            }
            _onMessage(message);
        }
    }

    private List<byte[]>? ReceiveOne(nint socket)
    {
        List<byte[]>? frames = null;
        ZmqNative.Message msg;
        while (true)
        {
            ZmqNative.zmq_msg_init(&msg);
            var size = ZmqNative.zmq_msg_recv(&msg, socket, frames is null ? ZmqNative.ZMQ_DONTWAIT : 0);
            if (size < 0)
            {
                var error = ZmqNative.zmq_errno();
                ZmqNative.zmq_msg_close(&msg);
                if (error == ZmqNative.EINTR)
                {
                    continue;
                }
                if (error != ZmqNative.EAGAIN)
                {
                    _onProblem($"zmq_msg_recv failed: {ZmqNative.LastError()}");
                }
                return null;
            }
            frames ??= new List<byte[]>(8);
            frames.Add(new ReadOnlySpan<byte>(ZmqNative.zmq_msg_data(&msg), size).ToArray());
            ZmqNative.zmq_msg_close(&msg);
            int more = 0;
            nuint length = sizeof(int);
            ZmqNative.zmq_getsockopt(socket, ZmqNative.ZMQ_RCVMORE, &more, &length);
            if (more == 0)
            {
                return frames;
            }
        }
    }
}
