using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Paddock.Daemon.Observability;
using Paddock.Envd.Connect;
using Paddock.Envd.Filesystem;
using Paddock.Envd.Process;

namespace Paddock.Daemon.Audit;

/// <summary>The envd calls the daemon tells apart (for the audit and for the agent-call metric).</summary>
internal enum EnvdMethod
{
    Other,
    ProcessStart,
    ProcessConnect,
    ProcessSendInput,
    ProcessStreamInput,
    ProcessUpdate,
    ProcessSendSignal,
    ProcessList,
    FilesystemMove,
    FilesystemRemove,
    FilesystemOther,
    FilesUpload,
    FilesDownload,
    Health,
}

/// <summary>
/// One envd call through the proxy, read for the audit trail: the request of a process start, a move, a remove or an
/// upload is read before it is forwarded (bounded; the bytes forwarded are the bytes read), and the response is
/// watched as it streams to the client (a process's start event with its pid, its end event with the exit code).
/// Paths are compared as the agent routes them (case-insensitive, a trailing slash ignored), so a call cannot slip
/// past by spelling. A call the daemon cannot read (a body over the bound, an unknown encoding) is still recorded,
/// with a note.
/// </summary>
internal sealed class EnvdCallAudit : IResponseTap
{
    /// <summary>The most of a request body read for the audit; process starts and file calls are far smaller.</summary>
    internal const int MaxRequestBytes = 1024 * 1024;

    // A process event larger than this is output (data), never a start or an end event: skipped unparsed.
    private const int MaxEventBytes = 64 * 1024;

    private static readonly JsonParser Json = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly AuditTrail _trail;
    private readonly string _sandboxId;
    private readonly string _teamId;
    private readonly EnvdMethod _method;
    private readonly bool _jsonCodec;
    private readonly string? _user;

    // Process start: what was asked, then the stream's state.
    private AuditEvent? _started;
    private bool _pty;
    private bool _startSeen;
    private bool _endSeen;
    private readonly byte[] _header = new byte[Envelope.HeaderSize];
    private int _headerFill;
    private byte[]? _payload;
    private int _payloadFill;
    private long _skip;
    private bool _unreadable;

    // Unary file calls: the event recorded once the agent answered.
    private AuditEvent? _fileEvent;
    private MemoryStream? _uploadAnswer;

    private EnvdCallAudit(AuditTrail trail, string sandboxId, string teamId, EnvdMethod method, bool jsonCodec, string? user)
    {
        _trail = trail;
        _sandboxId = sandboxId;
        _teamId = teamId;
        _method = method;
        _jsonCodec = jsonCodec;
        _user = user;
    }

    public static EnvdMethod Classify(HttpRequest request)
    {
        var path = request.Path.Value ?? "";
        if (path.Length > 1 && path[^1] == '/')
        {
            path = path[..^1];
        }
        static bool Is(string path, string name) => path.Equals(name, StringComparison.OrdinalIgnoreCase);
        if (Is(path, "/files"))
        {
            return HttpMethods.IsPost(request.Method) ? EnvdMethod.FilesUpload : EnvdMethod.FilesDownload;
        }
        if (path.StartsWith("/process.Process/", StringComparison.OrdinalIgnoreCase))
        {
            var name = path["/process.Process/".Length..];
            return name.ToLowerInvariant() switch
            {
                "start" => EnvdMethod.ProcessStart,
                "connect" => EnvdMethod.ProcessConnect,
                "sendinput" => EnvdMethod.ProcessSendInput,
                "streaminput" => EnvdMethod.ProcessStreamInput,
                "update" => EnvdMethod.ProcessUpdate,
                "sendsignal" => EnvdMethod.ProcessSendSignal,
                "list" => EnvdMethod.ProcessList,
                _ => EnvdMethod.Other,
            };
        }
        if (path.StartsWith("/filesystem.Filesystem/", StringComparison.OrdinalIgnoreCase))
        {
            var name = path["/filesystem.Filesystem/".Length..];
            return name.ToLowerInvariant() switch
            {
                "move" => EnvdMethod.FilesystemMove,
                "remove" => EnvdMethod.FilesystemRemove,
                _ => EnvdMethod.FilesystemOther,
            };
        }
        return Is(path, "/health") ? EnvdMethod.Health : EnvdMethod.Other;
    }

    /// <summary>The metric label of a method (a fixed set).</summary>
    public static string Label(EnvdMethod method) => method switch
    {
        EnvdMethod.ProcessStart => "process.Start",
        EnvdMethod.ProcessConnect => "process.Connect",
        EnvdMethod.ProcessSendInput => "process.SendInput",
        EnvdMethod.ProcessStreamInput => "process.StreamInput",
        EnvdMethod.ProcessUpdate => "process.Update",
        EnvdMethod.ProcessSendSignal => "process.SendSignal",
        EnvdMethod.ProcessList => "process.List",
        EnvdMethod.FilesystemMove => "filesystem.Move",
        EnvdMethod.FilesystemRemove => "filesystem.Remove",
        EnvdMethod.FilesystemOther => "filesystem.other",
        EnvdMethod.FilesUpload => "files.upload",
        EnvdMethod.FilesDownload => "files.download",
        EnvdMethod.Health => "health",
        _ => "other",
    };

    /// <summary>Whether calls of <paramref name="method"/> go into the audit trail.</summary>
    public static bool IsAudited(EnvdMethod method) =>
        method is EnvdMethod.ProcessStart or EnvdMethod.FilesystemMove or EnvdMethod.FilesystemRemove or EnvdMethod.FilesUpload;

    /// <summary>Reads the request of an audited call (and puts its bytes back for the proxy); null when the method is not audited.</summary>
    public static async Task<EnvdCallAudit?> BeginAsync(HttpContext http, EnvdMethod method, AuditTrail trail, string sandboxId, string teamId)
    {
        if (!IsAudited(method))
        {
            return null;
        }
        var request = http.Request;
        var contentType = request.ContentType ?? "";
        var json = contentType.Contains("json", StringComparison.OrdinalIgnoreCase);
        var call = new EnvdCallAudit(trail, sandboxId, teamId, method, json, UserOf(request));
        if (method == EnvdMethod.FilesUpload)
        {
            var q = request.Query;
            call._fileEvent = new AuditEvent
            {
                At = trail.Now,
                Kind = AuditKinds.FileWrite,
                Path = q["path"].ToString() is { Length: > 0 } p ? p : null,
                User = q["username"].ToString() is { Length: > 0 } u ? u : call._user,
            };
            call._uploadAnswer = new MemoryStream();
            return call;
        }

        var (body, note) = await ReadBodyAsync(http);
        var streaming = method == EnvdMethod.ProcessStart;
        byte[]? message = null;
        if (body is not null && note is null)
        {
            (message, note) = Decode(body, request.Headers[streaming ? "Connect-Content-Encoding" : "Content-Encoding"].ToString(), streaming);
        }
        try
        {
            switch (method)
            {
                case EnvdMethod.ProcessStart:
                    var start = message is null ? null : json ? Json.Parse<StartRequest>(Encoding.UTF8.GetString(message)) : StartRequest.Parser.ParseFrom(message);
                    call._pty = start?.Pty is not null;
                    call._started = new AuditEvent
                    {
                        At = trail.Now,
                        Kind = call._pty ? AuditKinds.PtyOpen : AuditKinds.ProcessStart,
                        Cmd = start?.Process?.Cmd,
                        Args = start?.Process is { } p1 ? [.. p1.Args] : null,
                        Cwd = start?.Process is { HasCwd: true } p2 ? p2.Cwd : null,
                        EnvNames = start?.Process is { Envs.Count: > 0 } p3 ? [.. p3.Envs.Keys.Order(StringComparer.Ordinal)] : null,
                        Tag = start is { HasTag: true } ? start.Tag : null,
                        User = call._user,
                        Note = note,
                    };
                    break;
                case EnvdMethod.FilesystemMove:
                    var move = message is null ? null : json ? Json.Parse<MoveRequest>(Encoding.UTF8.GetString(message)) : MoveRequest.Parser.ParseFrom(message);
                    call._fileEvent = new AuditEvent { At = trail.Now, Kind = AuditKinds.FileMove, Path = move?.Source, Destination = move?.Destination, User = call._user, Note = note };
                    break;
                case EnvdMethod.FilesystemRemove:
                    var remove = message is null ? null : json ? Json.Parse<RemoveRequest>(Encoding.UTF8.GetString(message)) : RemoveRequest.Parser.ParseFrom(message);
                    call._fileEvent = new AuditEvent { At = trail.Now, Kind = AuditKinds.FileRemove, Path = remove?.Path, User = call._user, Note = note };
                    break;
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The agent will refuse it too; recorded as an attempt the daemon could not read. Whatever the parser
            // throws on hostile input, the call itself goes on unchanged.
            var kind = method switch
            {
                EnvdMethod.ProcessStart => AuditKinds.ProcessStart,
                EnvdMethod.FilesystemMove => AuditKinds.FileMove,
                _ => AuditKinds.FileRemove,
            };
            var e = new AuditEvent { At = trail.Now, Kind = kind, User = call._user, Note = "unreadable request: " + ex.Message };
            if (method == EnvdMethod.ProcessStart)
            {
                call._started = e;
            }
            else
            {
                call._fileEvent = e;
            }
        }
        return call;
    }

    /// <summary>Shows the response stream of a process start to the parser (before the client gets it).</summary>
    public void OnWrite(ReadOnlySpan<byte> chunk)
    {
        if (_method == EnvdMethod.FilesUpload)
        {
            if (_uploadAnswer!.Length + chunk.Length <= MaxEventBytes)
            {
                _uploadAnswer.Write(chunk);
            }
            return;
        }
        if (_method != EnvdMethod.ProcessStart || _unreadable || _endSeen)
        {
            return;
        }
        while (chunk.Length > 0)
        {
            if (_skip > 0)
            {
                var n = (int)Math.Min(_skip, chunk.Length);
                _skip -= n;
                chunk = chunk[n..];
                continue;
            }
            if (_payload is null)
            {
                var n = Math.Min(Envelope.HeaderSize - _headerFill, chunk.Length);
                chunk[..n].CopyTo(_header.AsSpan(_headerFill));
                _headerFill += n;
                chunk = chunk[n..];
                if (_headerFill < Envelope.HeaderSize)
                {
                    return;
                }
                _headerFill = 0;
                var flags = _header[0];
                var length = BinaryPrimitives.ReadUInt32BigEndian(_header.AsSpan(1));
                if ((flags & Envelope.CompressedFlag) != 0)
                {
                    // The agent never compresses its answers; something else is in between. Say so instead of guessing.
                    _unreadable = true;
                    return;
                }
                if ((flags & Envelope.EndStreamFlag) != 0 || length > MaxEventBytes)
                {
                    _skip = length;
                    continue;
                }
                _payload = new byte[length];
                _payloadFill = 0;
            }
            var take = Math.Min(_payload.Length - _payloadFill, chunk.Length);
            chunk[..take].CopyTo(_payload.AsSpan(_payloadFill));
            _payloadFill += take;
            chunk = chunk[take..];
            if (_payloadFill == _payload.Length)
            {
                OnEvent(_payload);
                _payload = null;
            }
        }
    }

    private void OnEvent(byte[] payload)
    {
        // Data events are most of the stream: look before parsing. In JSON a key "end"/"start" can only be a key
        // (output is base64, without quotes); in protobuf the event's oneof field number is the first inner tag.
        if (_jsonCodec)
        {
            var span = payload.AsSpan();
            if (span.IndexOf("\"end\""u8) < 0 && span.IndexOf("\"start\""u8) < 0)
            {
                return;
            }
        }
        else if (!IsProtoStartOrEnd(payload))
        {
            return;
        }
        ProcessEvent? e;
        try
        {
            e = (_jsonCodec ? Json.Parse<StartResponse>(Encoding.UTF8.GetString(payload)) : StartResponse.Parser.ParseFrom(payload)).Event;
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // An event the parser cannot take (the agent can be replaced by code in the sandbox): not a start or end.
            return;
        }
        if (e?.EventCase == ProcessEvent.EventOneofCase.Start && !_startSeen)
        {
            _startSeen = true;
            _started = _started! with { At = _trail.Now, Pid = (int)e.Start.Pid };
            _trail.Record(_sandboxId, _teamId, _started);
        }
        else if (e?.EventCase == ProcessEvent.EventOneofCase.End && _startSeen)
        {
            _endSeen = true;
            _trail.Record(_sandboxId, _teamId, new AuditEvent
            {
                At = _trail.Now,
                Kind = _pty ? AuditKinds.PtyClose : AuditKinds.ProcessEnd,
                Pid = _started!.Pid,
                Cmd = _started.Cmd,
                ExitCode = e.End.Exited ? e.End.ExitCode : null,
                Status = e.End.HasError && e.End.Error.Length > 0 ? $"{e.End.Status} ({e.End.Error})" : e.End.Status,
            });
        }
    }

    private static bool IsProtoStartOrEnd(byte[] payload)
    {
        // StartResponse { ProcessEvent event = 1 }: tag 0x0A, a varint length, then ProcessEvent's first tag:
        // start = field 1 (0x0A), end = field 3 (0x1A).
        if (payload.Length < 3 || payload[0] != 0x0A)
        {
            return false;
        }
        var i = 1;
        while (i < payload.Length && (payload[i] & 0x80) != 0)
        {
            i++;
        }
        i++;
        return i < payload.Length && payload[i] is 0x0A or 0x1A;
    }

    /// <summary>Records what is left once the agent answered and the response ended.</summary>
    public void Complete(int status)
    {
        switch (_method)
        {
            case EnvdMethod.ProcessStart:
                if (_startSeen && !_endSeen)
                {
                    _trail.Record(_sandboxId, _teamId, new AuditEvent
                    {
                        At = _trail.Now,
                        Kind = _pty ? AuditKinds.PtyClose : AuditKinds.ProcessEnd,
                        Pid = _started!.Pid,
                        Cmd = _started.Cmd,
                        Status = _unreadable ? "unknown: the answer could not be read" : "unknown: the client's stream closed before the process ended (it may still run)",
                    });
                }
                else if (!_startSeen && _started is not null)
                {
                    // Refused by the agent (bad user, no such binary, ...) or unreadable: still an attempt to record.
                    _trail.Record(_sandboxId, _teamId, _started with { At = _trail.Now, HttpStatus = status, Status = "not started", Note = _started.Note ?? (_unreadable ? "answer unreadable" : null) });
                }
                break;
            case EnvdMethod.FilesUpload:
                var written = status is >= 200 and < 300 ? UploadedPaths() : null;
                if (written is { Count: > 0 })
                {
                    foreach (var path in written)
                    {
                        _trail.Record(_sandboxId, _teamId, _fileEvent! with { At = _trail.Now, Path = path, HttpStatus = status });
                    }
                }
                else
                {
                    _trail.Record(_sandboxId, _teamId, _fileEvent! with { At = _trail.Now, HttpStatus = status });
                }
                break;
            case EnvdMethod.FilesystemMove or EnvdMethod.FilesystemRemove when _fileEvent is not null:
                _trail.Record(_sandboxId, _teamId, _fileEvent with { At = _trail.Now, HttpStatus = status });
                break;
        }
    }

    /// <summary>The paths of E2B's upload answer (a JSON array of {name, type, path}).</summary>
    private List<string>? UploadedPaths()
    {
        try
        {
            using var doc = JsonDocument.Parse(_uploadAnswer!.ToArray());
            return doc.RootElement.ValueKind == JsonValueKind.Array
                ? [.. doc.RootElement.EnumerateArray()
                    .Select(e => e.ValueKind == JsonValueKind.Object && e.TryGetProperty("path", out var p) && p.ValueKind == JsonValueKind.String ? p.GetString() : null)
                    .OfType<string>()]
                : null;
        }
        catch (JsonException)
        {
            // Not E2B's answer (the agent can be replaced by code in the sandbox): the upload's asked path is recorded instead.
            return null;
        }
    }

    private static string? UserOf(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }
        try
        {
            var decoded = Encoding.UTF8.GetString(Convert.FromBase64String(header[6..].Trim()));
            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            return colon < 0 ? decoded : decoded[..colon];
        }
        catch (FormatException)
        {
            return null;
        }
    }

    /// <summary>Reads the whole request body (up to the bound) and puts it back for the proxy.</summary>
    private static async Task<(byte[]? Body, string? Note)> ReadBodyAsync(HttpContext http)
    {
        var request = http.Request;
        if (request.ContentLength > MaxRequestBytes)
        {
            return (null, $"request body of {request.ContentLength} bytes not read (over {MaxRequestBytes})");
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, http.RequestAborted)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > MaxRequestBytes)
            {
                // Put back what was read in front of the rest: the proxy forwards all of it, unread by the audit.
                var head = buffer.ToArray();
                request.Body = new ConcatenatedStream(head, request.Body);
                return (null, $"request body over {MaxRequestBytes} bytes not read");
            }
        }
        var body = buffer.ToArray();
        request.Body = new MemoryStream(body, writable: false);
        return (body, null);
    }

    /// <summary>The message of a (possibly gzip-compressed, for streams enveloped) body.</summary>
    private static (byte[]? Message, string? Note) Decode(byte[] body, string encoding, bool enveloped)
    {
        byte[] payload = body;
        var compressed = false;
        if (enveloped)
        {
            if (body.Length < Envelope.HeaderSize)
            {
                return (null, "request shorter than a Connect envelope");
            }
            var (flags, length) = Envelope.ReadHeader(body);
            if (length > body.Length - Envelope.HeaderSize)
            {
                return (null, "truncated Connect envelope");
            }
            payload = body.AsSpan(Envelope.HeaderSize, (int)length).ToArray();
            compressed = (flags & Envelope.CompressedFlag) != 0;
        }
        else
        {
            compressed = encoding is { Length: > 0 } and not "identity";
        }
        if (!compressed)
        {
            return (payload, null);
        }
        if (encoding != "gzip")
        {
            return (null, $"request compressed with '{encoding}', not read");
        }
        try
        {
            using var gzip = new GZipStream(new MemoryStream(payload), CompressionMode.Decompress);
            using var output = new MemoryStream();
            var chunk = new byte[16 * 1024];
            int n;
            while ((n = gzip.Read(chunk)) > 0)
            {
                output.Write(chunk, 0, n);
                if (output.Length > MaxRequestBytes)
                {
                    return (null, $"request decompresses to over {MaxRequestBytes} bytes, not read");
                }
            }
            return (output.ToArray(), null);
        }
        catch (InvalidDataException)
        {
            return (null, "request is not valid gzip");
        }
    }

    /// <summary>Bytes already read, then the rest of the original body.</summary>
    private sealed class ConcatenatedStream(byte[] head, Stream rest) : Observability.ReadOnlyForwardStream
    {
        private int _position;

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position < head.Length)
            {
                var n = Math.Min(buffer.Length, head.Length - _position);
                head.AsMemory(_position, n).CopyTo(buffer);
                _position += n;
                return n;
            }
            return await rest.ReadAsync(buffer, cancellationToken);
        }

        public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer, offset, count, CancellationToken.None).GetAwaiter().GetResult();
    }
}
