using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Paddock.Agent.Native;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Processes;

/// <summary>
/// The agent's hidden <c>__exec</c> mode, for a process that runs as another user. posix_spawn cannot change
/// credentials, and managed code must not run between fork and exec, so the agent posix_spawns its own binary in
/// this mode: a fresh process, where managed code is safe, that already has the final stdio, session and controlling
/// terminal. It reads an <see cref="ExecRequest"/> from descriptor 3 (a socket pair with the agent), then sets groups,
/// gid and uid, changes directory as the user, and execve's the target: the pid the agent reports is the target's.
/// Descriptor 3 is close-on-exec, so the agent reads EOF when the exec succeeded, or one failure message.
/// </summary>
internal static class ExecHelper
{
    /// <summary>The first argument that selects this mode (Program.cs checks it before building any host).</summary>
    public const string Verb = "__exec";

    /// <summary>The descriptor the agent's file actions put the channel on.</summary>
    public const int ChannelFd = 3;

    /// <summary>Exit code of a helper that could not exec, as a shell's "cannot execute" (sh(1)).</summary>
    public const int FailureExitCode = 127;

    public static int Run()
    {
        using var channel = new Socket(new SafeSocketHandle(ChannelFd, ownsHandle: true));
        ExecRequest request;
        try
        {
            request = ExecRequest.Read(channel);
        }
        catch (Exception ex) when (ex is IOException or SocketException or FormatException or InvalidDataException)
        {
            Report(channel, ConnectCode.Internal, $"exec helper: could not read its request: {ex.Message}");
            return FailureExitCode;
        }

        Signals.ResetForExec();
        var rc = Credentials.SetGroups(request.Groups);
        if (rc != 0)
        {
            Report(channel, ConnectCode.PermissionDenied, $"cannot set the groups of user '{request.UserName}': {Errno.Message(rc)}");
            return FailureExitCode;
        }
        rc = Credentials.SetGid(request.Gid);
        if (rc != 0)
        {
            Report(channel, ConnectCode.PermissionDenied, $"cannot switch to group {request.Gid} of user '{request.UserName}': {Errno.Message(rc)}");
            return FailureExitCode;
        }
        rc = Credentials.SetUid(request.Uid);
        if (rc != 0)
        {
            Report(channel, ConnectCode.PermissionDenied, $"cannot switch to user '{request.UserName}' (uid {request.Uid}): {Errno.Message(rc)}");
            return FailureExitCode;
        }
        // After setuid, so that a directory the user may not enter is refused as it would be in their own shell.
        rc = Credentials.ChangeDirectory(request.WorkingDirectory);
        if (rc != 0)
        {
            Report(channel, ConnectCode.InvalidArgument, $"cannot use cwd '{request.WorkingDirectory}' as user '{request.UserName}': {Errno.Message(rc)}");
            return FailureExitCode;
        }
        if (!Descriptors.SetCloseOnExec(ChannelFd))
        {
            Report(channel, ConnectCode.Internal, "exec helper: cannot mark its channel close-on-exec");
            return FailureExitCode;
        }
        rc = Credentials.Execute(request.Path, request.Argv, request.Envp);
        Report(channel, ConnectCode.InvalidArgument, ProcessSpawner.ExecFailure(request.Path, rc));
        return FailureExitCode;
    }

    private static void Report(Socket channel, ConnectCode code, string message)
    {
        try
        {
            channel.Send(Encoding.UTF8.GetBytes(code.ToWire() + "\n" + message));
        }
        catch (SocketException)
        {
            // The agent is gone; the exit code still tells the failure to whoever reaps us.
        }
    }

    /// <summary>Parses the helper's one failure message ("code\nmessage"); null for an empty channel (the exec succeeded).</summary>
    public static ConnectException? ParseFailure(ReadOnlySpan<byte> reply)
    {
        if (reply.IsEmpty)
        {
            return null;
        }
        var text = Encoding.UTF8.GetString(reply);
        var newline = text.IndexOf('\n', StringComparison.Ordinal);
        return newline < 0
            ? new ConnectException(ConnectCode.Internal, "exec helper: " + text)
            : new ConnectException(ConnectCodes.FromWire(text[..newline]), text[(newline + 1)..]);
    }
}

/// <summary>What the exec helper needs, sent over its channel: length-prefixed UTF-8 strings, counted up front.</summary>
internal sealed record ExecRequest(string UserName, uint Uid, uint Gid, uint[] Groups, string WorkingDirectory, string Path, IReadOnlyList<string> Argv, IReadOnlyList<string> Envp)
{
    // Linux caps argv+envp at a quarter of the stack limit (ARG_MAX 2 MiB by default); this only rejects garbage.
    private const int MaxBytes = 64 * 1024 * 1024;

    public byte[] Serialize()
    {
        var fields = new List<string>
        {
            UserName,
            Uid.ToString(CultureInfo.InvariantCulture),
            Gid.ToString(CultureInfo.InvariantCulture),
            string.Join(',', Groups.Select(g => g.ToString(CultureInfo.InvariantCulture))),
            WorkingDirectory,
            Path,
            Argv.Count.ToString(CultureInfo.InvariantCulture),
        };
        fields.AddRange(Argv);
        fields.Add(Envp.Count.ToString(CultureInfo.InvariantCulture));
        fields.AddRange(Envp);

        using var buffer = new MemoryStream();
        Span<byte> prefix = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(prefix, fields.Count);
        buffer.Write(prefix);
        foreach (var field in fields)
        {
            var bytes = Encoding.UTF8.GetBytes(field);
            BinaryPrimitives.WriteInt32BigEndian(prefix, bytes.Length);
            buffer.Write(prefix);
            buffer.Write(bytes);
        }
        return buffer.ToArray();
    }

    public static ExecRequest Read(Socket channel)
    {
        var count = ReadInt(channel);
        if (count < 9 || count > MaxBytes / 4)
        {
            throw new InvalidDataException($"invalid field count {count}");
        }
        var fields = new string[count];
        var total = 0;
        for (var i = 0; i < count; i++)
        {
            var length = ReadInt(channel);
            total += length;
            if (length < 0 || total > MaxBytes)
            {
                throw new InvalidDataException("request too large");
            }
            var bytes = new byte[length];
            ReadExactly(channel, bytes);
            fields[i] = Encoding.UTF8.GetString(bytes);
        }
        var next = 6;
        var argc = int.Parse(fields[next++], CultureInfo.InvariantCulture);
        var argv = fields.AsSpan(next, argc).ToArray();
        next += argc;
        var envc = int.Parse(fields[next++], CultureInfo.InvariantCulture);
        var envp = fields.AsSpan(next, envc).ToArray();
        var groups = fields[3].Length == 0 ? [] : fields[3].Split(',').Select(g => uint.Parse(g, CultureInfo.InvariantCulture)).ToArray();
        return new ExecRequest(fields[0], uint.Parse(fields[1], CultureInfo.InvariantCulture), uint.Parse(fields[2], CultureInfo.InvariantCulture), groups, fields[4], fields[5], argv, envp);
    }

    private static int ReadInt(Socket channel)
    {
        Span<byte> prefix = stackalloc byte[4];
        ReadExactly(channel, prefix);
        return BinaryPrimitives.ReadInt32BigEndian(prefix);
    }

    private static void ReadExactly(Socket channel, Span<byte> destination)
    {
        while (!destination.IsEmpty)
        {
            var n = channel.Receive(destination);
            if (n == 0)
            {
                throw new IOException("the agent closed the channel early");
            }
            destination = destination[n..];
        }
    }
}
