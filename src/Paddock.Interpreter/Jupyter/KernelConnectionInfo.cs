using System.Net;
using System.Net.Sockets;
using System.Text.Json;

namespace Paddock.Interpreter.Jupyter;

/// <summary>A kernel's connection file (jupyter_client's format): loopback TCP ports and the signing key.</summary>
internal sealed record KernelConnectionInfo(int ShellPort, int IopubPort, int StdinPort, int ControlPort, int HeartbeatPort, string Key)
{
    public const string Ip = "127.0.0.1";

    public string Endpoint(int port) => $"tcp://{Ip}:{port}";

    /// <summary>
    /// Five free loopback ports, as jupyter_client picks them: bound to port 0 together, then released for the
    /// kernel to bind. Another process could take one in between; the kernel then fails to start and is started again.
    /// </summary>
    public static KernelConnectionInfo WithFreePorts(string key)
    {
        var sockets = new Socket[5];
        try
        {
            for (var i = 0; i < sockets.Length; i++)
            {
                sockets[i] = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                sockets[i].Bind(new IPEndPoint(IPAddress.Loopback, 0));
            }
            int Port(int i) => ((IPEndPoint)sockets[i].LocalEndPoint!).Port;
            return new KernelConnectionInfo(Port(0), Port(1), Port(2), Port(3), Port(4), key);
        }
        finally
        {
            foreach (var s in sockets)
            {
                s?.Dispose();
            }
        }
    }

    public void Write(string path)
    {
        // 0600: the key signs messages the kernel executes; nobody else in the sandbox may read it.
        using var stream = new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            Share = FileShare.None,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        });
        using var w = new Utf8JsonWriter(stream);
        w.WriteStartObject();
        w.WriteNumber("shell_port", ShellPort);
        w.WriteNumber("iopub_port", IopubPort);
        w.WriteNumber("stdin_port", StdinPort);
        w.WriteNumber("control_port", ControlPort);
        w.WriteNumber("hb_port", HeartbeatPort);
        w.WriteString("ip", Ip);
        w.WriteString("key", Key);
        w.WriteString("transport", "tcp");
        w.WriteString("signature_scheme", "hmac-sha256");
        w.WriteString("kernel_name", "");
        w.WriteEndObject();
    }
}
