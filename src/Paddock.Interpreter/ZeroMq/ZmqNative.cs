using System.Runtime.InteropServices;

namespace Paddock.Interpreter.ZeroMq;

/// <summary>
/// The few libzmq calls the Jupyter client needs, bound to Debian's <c>libzmq.so.5</c> (4.3.4), which the template
/// has anyway: <c>python3-ipykernel</c> depends on <c>python3-zmq</c>, which depends on <c>libzmq5</c>. Loaded when
/// first called, so the binary starts (and its unit tests run) on hosts without it. Every call returns -1 (or null)
/// with the reason in <see cref="zmq_errno"/>, not in errno.
/// </summary>
internal static unsafe partial class ZmqNative
{
    private const string Library = "libzmq.so.5";

    public const int ZMQ_SUB = 2;
    public const int ZMQ_DEALER = 5;

    public const int ZMQ_LINGER = 17;
    public const int ZMQ_SUBSCRIBE = 6;
    public const int ZMQ_RCVMORE = 13;

    public const int ZMQ_DONTWAIT = 1;
    public const int ZMQ_SNDMORE = 2;

    public const short ZMQ_POLLIN = 1;

    public const int EAGAIN = 11;
    public const int EINTR = 4;

    /// <summary>zmq_pollitem_t on 64-bit Linux: the socket (or null), an fd used when the socket is null, events.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct PollItem
    {
        public nint Socket;
        public int Fd;
        public short Events;
        public short Revents;
    }

    /// <summary>zmq_msg_t: 64 opaque bytes, 8-aligned (zmq.h).</summary>
    [StructLayout(LayoutKind.Sequential, Size = 64)]
    public struct Message
    {
        private long _first;
    }

    [LibraryImport(Library)]
    public static partial nint zmq_ctx_new();

    [LibraryImport(Library)]
    public static partial int zmq_ctx_term(nint context);

    [LibraryImport(Library)]
    public static partial nint zmq_socket(nint context, int type);

    [LibraryImport(Library)]
    public static partial int zmq_close(nint socket);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int zmq_connect(nint socket, string endpoint);

    [LibraryImport(Library)]
    public static partial int zmq_setsockopt(nint socket, int option, void* value, nuint length);

    [LibraryImport(Library)]
    public static partial int zmq_getsockopt(nint socket, int option, void* value, nuint* length);

    [LibraryImport(Library)]
    public static partial int zmq_send(nint socket, void* buffer, nuint length, int flags);

    [LibraryImport(Library)]
    public static partial int zmq_msg_init(Message* message);

    [LibraryImport(Library)]
    public static partial int zmq_msg_recv(Message* message, nint socket, int flags);

    [LibraryImport(Library)]
    public static partial void* zmq_msg_data(Message* message);

    [LibraryImport(Library)]
    public static partial nuint zmq_msg_size(Message* message);

    [LibraryImport(Library)]
    public static partial int zmq_msg_close(Message* message);

    [LibraryImport(Library)]
    public static partial int zmq_poll(PollItem* items, int count, long timeoutMs);

    [LibraryImport(Library)]
    public static partial int zmq_errno();

    [LibraryImport(Library)]
    public static partial nint zmq_strerror(int error);

    /// <summary>The message of libzmq's last error on this thread.</summary>
    public static string LastError()
    {
        var error = zmq_errno();
        return $"{Marshal.PtrToStringUTF8(zmq_strerror(error))} (errno {error})";
    }
}
