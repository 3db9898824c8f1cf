using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Paddock.Client.Api;
using Paddock.Client.Envd;
using Paddock.Client.Http;
using Paddock.Envd.Connect;
using FsProto = Paddock.Envd.Filesystem;

namespace Paddock.Client;

/// <summary>
/// The sandbox's filesystem (<c>sandbox.Files</c>): contents move over envd's plain HTTP <c>/files</c> (streamed
/// both ways), everything else goes through its <c>filesystem.Filesystem</c> service.
/// </summary>
public sealed class Filesystem
{
    private const string Service = "filesystem.Filesystem/";
    private readonly EnvdClient _envd;
    private readonly string? _envdVersion;

    internal Filesystem(EnvdClient envd, string? envdVersion)
    {
        _envd = envd;
        _envdVersion = envdVersion;
    }

    /// <summary>Reads a file as UTF-8 text.</summary>
    public async Task<string> ReadTextAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default) =>
        Encoding.UTF8.GetString(await ReadBytesAsync(path, options, cancellationToken).ConfigureAwait(false));

    /// <summary>Reads a file's bytes.</summary>
    public async Task<byte[]> ReadBytesAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var deadline = HttpTransport.StartDeadline(_envd.RequestTimeout(options?.RequestTimeout), cancellationToken);
        var uri = FilesUrl(path, options?.User);
        try
        {
            using var request = NewFilesRequest(HttpMethod.Get, uri);
            using var response = await _envd.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, $"reading {path}", deadline.Token).ConfigureAwait(false);
            return await response.Content.ReadAsByteArrayAsync(deadline.Token).ConfigureAwait(false);
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, $"reading {path}");
        }
    }

    /// <summary>
    /// Opens a file for reading as it downloads. The request timeout covers the start only; dispose the stream to
    /// end the download early. Reads fail with <see cref="ServiceUnreachableException"/> when the connection breaks.
    /// </summary>
    public async Task<Stream> OpenReadAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        var deadline = HttpTransport.StartDeadline(_envd.RequestTimeout(options?.RequestTimeout), cancellationToken);
        var uri = FilesUrl(path, options?.User);
        HttpResponseMessage? response = null;
        try
        {
            using var request = NewFilesRequest(HttpMethod.Get, uri);
            response = await _envd.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, $"reading {path}", deadline.Token).ConfigureAwait(false);
            var body = await response.Content.ReadAsStreamAsync(deadline.Token).ConfigureAwait(false);
            deadline.Dispose();
            return new DownloadStream(body, response, uri, response.Content.Headers.ContentLength);
        }
        catch (Exception ex)
        {
            response?.Dispose();
            var translated = HttpTransport.IsTransportFailure(ex) ? HttpTransport.Translate(ex, uri, cancellationToken, deadline, $"reading {path}") : ex;
            deadline.Dispose();
            if (ReferenceEquals(translated, ex))
            {
                throw;
            }
            throw translated;
        }
    }

    /// <summary>Writes text (UTF-8) to a file, creating it and its parent directories, replacing what was there.</summary>
    public Task<WriteInfo> WriteAsync(string path, string text, FilesystemOptions? options = null, CancellationToken cancellationToken = default) =>
        WriteAsync(path, Encoding.UTF8.GetBytes(text), options, cancellationToken);

    /// <summary>Writes bytes to a file, creating it and its parent directories, replacing what was there.</summary>
    public Task<WriteInfo> WriteAsync(string path, ReadOnlyMemory<byte> data, FilesystemOptions? options = null, CancellationToken cancellationToken = default) =>
        UploadAsync(path, new ReadOnlyMemoryContent(data), streamed: false, options, cancellationToken);

    /// <summary>
    /// Writes a stream to a file as it is read (nothing is buffered whole), creating parent directories. No request
    /// timeout applies to a streamed upload: the caller's token bounds it.
    /// </summary>
    public Task<WriteInfo> WriteAsync(string path, Stream data, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        var content = new StreamContent(data, 81920);
        if (data.CanSeek)
        {
            content.Headers.ContentLength = data.Length - data.Position;
        }
        return UploadAsync(path, content, streamed: true, options, cancellationToken);
    }

    private async Task<WriteInfo> UploadAsync(string path, HttpContent content, bool streamed, FilesystemOptions? options, CancellationToken cancellationToken)
    {
        using var deadline = HttpTransport.StartDeadline(streamed ? Timeout.InfiniteTimeSpan : _envd.RequestTimeout(options?.RequestTimeout), cancellationToken);
        var uri = FilesUrl(path, options?.User);
        try
        {
            using var request = NewFilesRequest(HttpMethod.Post, uri);
            if (SupportsOctetStream)
            {
                content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                request.Content = content;
            }
            else
            {
                // envd before 0.5.7 takes multipart only; the part's file name is the target path (as E2B's SDK sends it).
                content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                var form = new MultipartFormDataContent { { content, "file", path } };
                request.Content = form;
            }
            using var response = await _envd.Http.SendAsync(request, HttpCompletionOption.ResponseContentRead, deadline.Token).ConfigureAwait(false);
            await ThrowIfFailed(response, $"writing {path}", deadline.Token).ConfigureAwait(false);
            var json = await response.Content.ReadAsStringAsync(deadline.Token).ConfigureAwait(false);
            List<WriteInfoDto>? written;
            try
            {
                written = JsonSerializer.Deserialize(json, ApiJson.Default.ListWriteInfoDto);
            }
            catch (JsonException ex)
            {
                throw new SandboxException($"writing {path}: the sandbox answered a body that is not the expected JSON: {ex.Message}", ex);
            }
            var first = written is { Count: > 0 } ? written[0] : throw new SandboxException($"writing {path}: the sandbox did not say what it wrote");
            return new WriteInfo { Name = first.Name ?? System.IO.Path.GetFileName(path), Path = first.Path ?? path, Type = first.Type == "dir" ? FileType.Directory : FileType.File };
        }
        catch (Exception ex) when (HttpTransport.IsTransportFailure(ex))
        {
            throw HttpTransport.Translate(ex, uri, cancellationToken, deadline, $"writing {path}");
        }
        finally
        {
            content.Dispose();
        }
    }

    /// <summary>Lists a directory; <paramref name="depth"/> 1 lists its entries, 2 their entries too, and so on.</summary>
    public async Task<IReadOnlyList<EntryInfo>> ListAsync(string path, int depth = 1, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(depth, 1);
        var response = await _envd.UnaryAsync(Service + "ListDir", new FsProto.ListDirRequest { Path = path, Depth = (uint)depth }, FsProto.ListDirResponse.Parser, options?.User, options?.RequestTimeout, $"listing {path}", cancellationToken).ConfigureAwait(false);
        return response.Entries.Where(e => e.Type != FsProto.FileType.Unspecified).Select(ToEntry).ToArray();
    }

    /// <summary>Whether a file or directory exists.</summary>
    public async Task<bool> ExistsAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        try
        {
            await _envd.Rpc.UnaryAsync(Service + "Stat", new FsProto.StatRequest { Path = path }, new CallOptions(_envd.RequestTimeout(options?.RequestTimeout), options?.User), FsProto.StatResponse.Parser, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (ConnectException ex) when (ex.Code == ConnectCode.NotFound && ex.Data["HttpStatus"] is not (502 or 503))
        {
            return false;
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, _envd.SandboxId, $"checking {path}");
        }
    }

    /// <summary>Information about a file or directory.</summary>
    public async Task<EntryInfo> GetInfoAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await _envd.UnaryAsync(Service + "Stat", new FsProto.StatRequest { Path = path }, FsProto.StatResponse.Parser, options?.User, options?.RequestTimeout, $"reading the information of {path}", cancellationToken).ConfigureAwait(false);
        return ToEntry(response.Entry ?? throw new SandboxException($"the sandbox sent no information about {path}"));
    }

    /// <summary>Creates a directory and its parents; false when it existed already.</summary>
    public async Task<bool> MakeDirAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        try
        {
            await _envd.Rpc.UnaryAsync(Service + "MakeDir", new FsProto.MakeDirRequest { Path = path }, new CallOptions(_envd.RequestTimeout(options?.RequestTimeout), options?.User), FsProto.MakeDirResponse.Parser, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (ConnectException ex) when (ex.Code == ConnectCode.AlreadyExists)
        {
            return false;
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, _envd.SandboxId, $"creating directory {path}");
        }
    }

    /// <summary>Renames (moves) a file or directory; returns the entry at its new path.</summary>
    public async Task<EntryInfo> RenameAsync(string oldPath, string newPath, FilesystemOptions? options = null, CancellationToken cancellationToken = default)
    {
        var response = await _envd.UnaryAsync(Service + "Move", new FsProto.MoveRequest { Source = oldPath, Destination = newPath }, FsProto.MoveResponse.Parser, options?.User, options?.RequestTimeout, $"renaming {oldPath} to {newPath}", cancellationToken).ConfigureAwait(false);
        return ToEntry(response.Entry ?? throw new SandboxException($"the sandbox sent no information about {newPath}"));
    }

    /// <summary>Removes a file, or a directory with everything in it.</summary>
    public Task RemoveAsync(string path, FilesystemOptions? options = null, CancellationToken cancellationToken = default) =>
        _envd.UnaryAsync(Service + "Remove", new FsProto.RemoveRequest { Path = path }, FsProto.RemoveResponse.Parser, options?.User, options?.RequestTimeout, $"removing {path}", cancellationToken);

    /// <summary>
    /// Starts watching a directory and returns once the watch is in place: every change after this call returns is
    /// reported. Iterate the handle for the events; dispose it to stop watching.
    /// </summary>
    public async Task<WatchHandle> WatchDirAsync(string path, WatchOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new WatchOptions();
        var call = new CallOptions(_envd.RequestTimeout(options.RequestTimeout), options.User, SandboxCommands.ServerTimeout(options.Timeout), EnvdClient.KeepAliveSeconds);
        ServerStream<FsProto.WatchDirResponse> stream;
        try
        {
            stream = await _envd.Rpc.ServerStreamAsync(Service + "WatchDir", new FsProto.WatchDirRequest { Path = path, Recursive = options.Recursive }, call, FsProto.WatchDirResponse.Parser, cancellationToken).ConfigureAwait(false);
        }
        catch (ConnectException ex)
        {
            throw EnvdErrors.From(ex, _envd.SandboxId, $"watching {path}");
        }
        try
        {
            using var start = new CancellationTokenSource(call.RequestTimeout);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(start.Token, cancellationToken);
            var first = await stream.ReadAsync(linked.Token).ConfigureAwait(false);
            if (first?.EventCase != FsProto.WatchDirResponse.EventOneofCase.Start)
            {
                throw new SandboxException($"watching {path}: the sandbox's first event was not the start of the watch");
            }
            return new WatchHandle(stream, _envd.SandboxId, path);
        }
        catch (Exception ex)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            if (ex is ConnectException c)
            {
                throw EnvdErrors.From(c, _envd.SandboxId, $"watching {path}");
            }
            throw;
        }
    }

    internal static EntryInfo ToEntry(FsProto.EntryInfo e) => new()
    {
        Name = e.Name,
        Type = e.Type switch
        {
            FsProto.FileType.File => FileType.File,
            FsProto.FileType.Directory => FileType.Directory,
            FsProto.FileType.Symlink => FileType.Symlink,
            _ => FileType.Unknown,
        },
        Path = e.Path,
        Size = e.Size,
        Mode = e.Mode,
        Permissions = e.Permissions,
        Owner = e.Owner,
        Group = e.Group,
        ModifiedTime = e.ModifiedTime?.ToDateTimeOffset(),
        SymlinkTarget = e.HasSymlinkTarget ? e.SymlinkTarget : null,
        Metadata = e.Metadata.Count > 0 ? e.Metadata.ToDictionary() : null,
    };

    // envd 0.5.7 accepts application/octet-stream uploads (E2B's versions.ts); unknown versions are assumed current.
    private bool SupportsOctetStream => _envdVersion is null || !Version.TryParse(_envdVersion, out var v) || v >= new Version(0, 5, 7);

    private Uri FilesUrl(string path, string? user)
    {
        var query = new StringBuilder("files?path=").Append(Uri.EscapeDataString(path));
        if (user is { Length: > 0 })
        {
            query.Append("&username=").Append(Uri.EscapeDataString(user));
        }
        return _envd.Endpoint.Url(query.ToString());
    }

    private HttpRequestMessage NewFilesRequest(HttpMethod method, Uri uri)
    {
        var request = new HttpRequestMessage(method, uri);
        // The user travels in the query for /files (envd.yaml); no Authorization header here.
        _envd.Endpoint.Apply(request, user: null);
        return request;
    }

    private async Task ThrowIfFailed(HttpResponseMessage response, string what, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        var message = body;
        if (body.TrimStart().StartsWith('{'))
        {
            try
            {
                message = JsonSerializer.Deserialize(body, ApiJson.Default.ErrorDto)?.Message ?? body;
            }
            catch (JsonException)
            {
                // not the JSON error shape: the raw body is the best message there is
            }
        }
        if (string.IsNullOrWhiteSpace(message))
        {
            message = response.ReasonPhrase ?? response.StatusCode.ToString();
        }
        throw EnvdErrors.FromHttp((int)response.StatusCode, message.Trim(), _envd.SandboxId, what);
    }

    /// <summary>A download's body: owns the response, and turns broken connections into the SDK's exceptions.</summary>
    private sealed class DownloadStream : Stream
    {
        private readonly Stream _inner;
        private readonly HttpResponseMessage _response;
        private readonly Uri _uri;
        private readonly long? _length;

        public DownloadStream(Stream inner, HttpResponseMessage response, Uri uri, long? length)
        {
            _inner = inner;
            _response = response;
            _uri = uri;
            _length = length;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => _length ?? throw new NotSupportedException("the server did not send the length");
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            try
            {
                return _inner.Read(buffer);
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException)
            {
                throw HttpTransport.Translate(ex, _uri, CancellationToken.None, null, "downloading");
            }
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            try
            {
                return await _inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or HttpRequestException)
            {
                throw HttpTransport.Translate(ex, _uri, cancellationToken, null, "downloading");
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _inner.Dispose();
                _response.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
