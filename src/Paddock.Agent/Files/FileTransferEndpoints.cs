using System.Buffers;
using System.IO.Compression;
using System.IO.Pipelines;
using System.Text.Json;
using Microsoft.Net.Http.Headers;
using Paddock.Agent.Connect;
using Paddock.Agent.Filesystem;
using Paddock.Agent.Hosting;
using Paddock.Agent.Native;
using Paddock.Agent.Users;
using Paddock.Envd.Connect;

namespace Paddock.Agent.Files;

/// <summary>
/// E2B's plain-HTTP file transfer (envd.yaml, <c>/files</c>): <c>GET</c> streams a file out, <c>POST</c> streams
/// one (<c>application/octet-stream</c> with <c>path</c>) or several (<c>multipart/form-data</c>, each part's filename
/// its target) files in. Neither buffers a whole file. The user comes from the <c>username</c> query parameter (the
/// one a signed URL signs), else <c>Authorization: Basic</c>, else the default user.
/// </summary>
internal static class FileTransferEndpoints
{
    /// <summary>Most files one multipart upload may carry: each is a temporary file until the upload commits.</summary>
    public const int MaxFilesPerUpload = 1000;

    /// <summary>The most a download reads and sends at once: each flush costs hand-overs to the socket and back, whatever its size.</summary>
    private const int DownloadChunk = 1024 * 1024;

    /// <summary>
    /// The read size of a gzip-encoded multipart body's decoded bytes (a plain body is read from Kestrel's own buffers).
    /// </summary>
    private const int DecodedBodyBuffer = 256 * 1024;

    public static AgentRoutes MapFileTransfer(this AgentRoutes app)
    {
        var services = app.Services;
        var transfer = new FileTransfer(services.Users, services.Options.DefaultWorkdir, services.Loggers.CreateLogger("Paddock.Agent.Files"));
        app.MapGet("/files", transfer.DownloadAsync);
        app.MapPost("/files", transfer.UploadAsync);
        return app;
    }

    private sealed class FileTransfer
    {
        private readonly UserDirectory _users;
        private readonly string? _defaultWorkdir;
        private readonly ILogger _log;

        public FileTransfer(UserDirectory users, string? defaultWorkdir, ILogger log)
        {
            _users = users;
            _defaultWorkdir = defaultWorkdir;
            _log = log;
        }

        public async Task DownloadAsync(HttpContext http)
        {
            const string action = "cannot download";
            string path;
            Microsoft.Win32.SafeHandles.SafeFileHandle file;
            try
            {
                var user = ResolveUser(http);
                path = PathResolver.Resolve(http.Request.Query["path"].ToString(), user, _defaultWorkdir);
                var errno = FileStatus.TryGet(path, followSymlinks: true, out var status);
                if (errno != 0)
                {
                    throw FsErrors.FromErrno(errno, path, action);
                }
                if (status.IsDirectory)
                {
                    throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: path '{PathResolver.Printable(path)}' is a directory");
                }
                if (!status.IsRegular)
                {
                    // A FIFO or device could block the open or never end.
                    throw new ConnectException(ConnectCode.InvalidArgument, $"{action}: path '{PathResolver.Printable(path)}' is not a regular file");
                }
                try
                {
                    file = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, FileOptions.Asynchronous);
                }
                catch (Exception ex) when (FsErrors.IsFileError(ex))
                {
                    throw FsErrors.From(ex, path, action);
                }
            }
            catch (ConnectException error)
            {
                await FilesErrors.WriteAsync(http, error);
                return;
            }

            using (file)
            {
                var length = RandomAccess.GetLength(file);
                var gzip = DownloadEncoding.Choose(http.Request.Headers.AcceptEncoding.ToString(), length);
                if (gzip is null)
                {
                    await FilesErrors.WriteAsync(http, StatusCodes.Status406NotAcceptable, "no acceptable encoding found, supported: [identity, gzip]");
                    return;
                }
                var response = http.Response;
                response.StatusCode = StatusCodes.Status200OK;
                response.ContentType = "application/octet-stream";
                var disposition = new ContentDispositionHeaderValue("attachment");
                disposition.SetHttpFileName(PathResolver.NameOf(path));
                response.Headers.ContentDisposition = disposition.ToString();
                response.Headers.Vary = "Accept-Encoding";
                if (gzip.Value)
                {
                    response.Headers.ContentEncoding = "gzip";
                }
                else
                {
                    response.ContentLength = length;
                }
                await SendAsync(http, file, path, length, gzip.Value);
            }
        }

        /// <summary>The size of each write of a gzip-encoded download.</summary>
        private const int GzipWriteBytes = 1024 * 1024;

        private async Task SendAsync(HttpContext http, Microsoft.Win32.SafeHandles.SafeFileHandle file, string path, long length, bool gzip)
        {
            if (!gzip)
            {
                await SendIdentityAsync(http, file, path, length);
                return;
            }
            var cancellationToken = http.RequestAborted;
            var buffer = ArrayPool<byte>.Shared.Rent(128 * 1024);
            // GZipStream writes each deflate block as it fills (~7 KiB); Node's fetch decompresses such small pieces
            // very slowly (a 16 MiB read took 13 s, against 0.25 s in 1 MiB pieces, measured with e2b 2.51), so the
            // compressed bytes are gathered into large writes. Never disposed: that would close the response body.
            var chunker = gzip ? new BufferedStream(http.Response.Body, GzipWriteBytes) : null;
            var output = chunker is not null ? new GZipStream(chunker, CompressionLevel.Fastest, leaveOpen: true) : http.Response.Body;
            long offset = 0;
            try
            {
                while (offset < length)
                {
                    int read;
                    try
                    {
                        read = await RandomAccess.ReadAsync(file, buffer.AsMemory(0, (int)Math.Min(buffer.Length, length - offset)), offset, cancellationToken);
                    }
                    catch (IOException ex)
                    {
                        FilesLog.DownloadFailed(_log, path, ex);
                        http.Abort();
                        return;
                    }
                    if (read == 0)
                    {
                        break; // the file shrank while it was sent
                    }
                    await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                    offset += read;
                }
                if (chunker is not null)
                {
                    await output.DisposeAsync();
                    await chunker.FlushAsync(cancellationToken);
                }
                if (offset < length && !gzip)
                {
                    // Fewer bytes than the Content-Length promised: only a cut connection tells the client.
                    http.Abort();
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException && cancellationToken.IsCancellationRequested)
            {
                FilesLog.DownloadAborted(_log, path);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(buffer);
                if (gzip)
                {
                    await DisposeQuietly(output);
                }
            }
        }

        /// <summary>
        /// The file as it is: read straight into the response's own buffers (no copy in between), a large read per
        /// flush. The reads are synchronous: a read from the page cache takes a fraction of a millisecond, and
        /// RandomAccess.ReadAsync on Linux is the same blocking pread on another thread-pool thread at the cost of a
        /// hand-over per read. Measured with bench/ (256 MiB GET /files, JIT build): the agent's CPU per MiB went
        /// from 0.9 ms (128 KiB reads into a buffer of ours, then a copy) to 0.4-0.6 ms.
        /// </summary>
        private async Task SendIdentityAsync(HttpContext http, Microsoft.Win32.SafeHandles.SafeFileHandle file, string path, long length)
        {
            var cancellationToken = http.RequestAborted;
            var writer = http.Response.BodyWriter;
            long offset = 0;
            try
            {
                while (offset < length)
                {
                    var memory = writer.GetMemory(DownloadChunk);
                    int read;
                    try
                    {
                        read = RandomAccess.Read(file, memory.Span[..(int)Math.Min(memory.Length, length - offset)], offset);
                    }
                    catch (IOException ex)
                    {
                        FilesLog.DownloadFailed(_log, path, ex);
                        http.Abort();
                        return;
                    }
                    if (read == 0)
                    {
                        break; // the file shrank while it was sent
                    }
                    writer.Advance(read);
                    offset += read;
                    await writer.FlushAsync(cancellationToken);
                }
                if (offset < length)
                {
                    // Fewer bytes than the Content-Length promised: only a cut connection tells the client.
                    http.Abort();
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException && cancellationToken.IsCancellationRequested)
            {
                FilesLog.DownloadAborted(_log, path);
            }
        }

        public async Task UploadAsync(HttpContext http)
        {
            var pending = new List<PendingUpload>();
            var target = http.Request.Query["path"].ToString();
            try
            {
                var user = ResolveUser(http);
                var metadata = UploadMetadata.Parse(http.Request.Headers);
                var body = DecodedBody(http);
                var mediaType = MediaTypeHeaderValue.TryParse(http.Request.ContentType, out var parsed) ? parsed : null;
                var type = mediaType?.MediaType.Value?.ToLowerInvariant();
                if (type == "multipart/form-data")
                {
                    await ReceiveMultipartAsync(http, body, mediaType!, user, metadata, pending);
                }
                else if (type == "application/octet-stream")
                {
                    if (target.Length == 0)
                    {
                        throw new ConnectException(ConnectCode.InvalidArgument, "the path query parameter is required for an application/octet-stream upload");
                    }
                    var upload = Begin(target, user, pending);
                    if (ReferenceEquals(body, http.Request.Body))
                    {
                        await upload.CopyFromAsync(http.Request.BodyReader, http.RequestAborted);
                    }
                    else
                    {
                        await upload.CopyFromAsync(body, http.RequestAborted);
                    }
                    upload.Finish(metadata);
                }
                else
                {
                    throw new ConnectException(ConnectCode.InvalidArgument, $"unsupported Content-Type '{http.Request.ContentType}': send multipart/form-data or application/octet-stream");
                }

                foreach (var upload in pending)
                {
                    upload.Commit();
                }
                await WriteEntriesAsync(http, pending, metadata);
            }
            catch (ConnectException error)
            {
                // Temporary files go before the answer does: a client that sees the error sees nothing left behind.
                DisposeAll(pending);
                await FilesErrors.WriteAsync(http, error);
            }
            catch (Exception ex) when (http.RequestAborted.IsCancellationRequested && ex is OperationCanceledException or IOException)
            {
                FilesLog.UploadAborted(_log, target);
            }
            catch (Exception ex) when (ex is IOException or InvalidDataException)
            {
                // Reading the body failed: it ended early (BadHttpRequestException is an IOException), or its
                // multipart framing or gzip stream is malformed.
                DisposeAll(pending);
                await FilesErrors.WriteAsync(http, StatusCodes.Status400BadRequest, $"malformed upload body: {ex.Message}");
            }
            finally
            {
                DisposeAll(pending);
            }
        }

        /// <summary>Closes every upload and removes the temporary files of those not committed (idempotent).</summary>
        private static void DisposeAll(List<PendingUpload> pending)
        {
            foreach (var upload in pending)
            {
                upload.Dispose();
            }
        }

        private async Task ReceiveMultipartAsync(HttpContext http, Stream body, MediaTypeHeaderValue mediaType, AgentUser user, IReadOnlyDictionary<string, string> metadata, List<PendingUpload> pending)
        {
            var boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value;
            if (string.IsNullOrEmpty(boundary) || boundary.Length > 70)
            {
                throw new ConnectException(ConnectCode.InvalidArgument, "multipart/form-data without a valid boundary (1-70 characters, RFC 2046)");
            }
            var queryPath = http.Request.Query["path"].ToString();
            // Kestrel's own request pipe when the body is not encoded, so the parts' bytes are written from its buffers.
            var ownPipe = !ReferenceEquals(body, http.Request.Body);
            var pipe = !ownPipe
                ? http.Request.BodyReader
                : PipeReader.Create(body, new StreamPipeReaderOptions(bufferSize: DecodedBodyBuffer, leaveOpen: true));
            try
            {
                var reader = new MultipartBody(pipe, boundary);
                while (await reader.ReadNextPartAsync(http.RequestAborted) is { } headers)
                {
                    if (!headers.TryGetValue(HeaderNames.ContentDisposition, out var contentDisposition)
                        || !ContentDispositionHeaderValue.TryParse(contentDisposition, out var disposition)
                        || !string.Equals(HeaderUtilities.RemoveQuotes(disposition.Name).Value, "file", StringComparison.Ordinal))
                    {
                        // Not a file part: the next ReadNextPartAsync skips its bytes.
                        continue;
                    }
                    // The SDKs put the target path in the part's filename; a signed upload URL carries it in ?path=.
                    var fileName = HeaderUtilities.RemoveQuotes(disposition.FileNameStar).Value;
                    if (string.IsNullOrEmpty(fileName))
                    {
                        fileName = HeaderUtilities.RemoveQuotes(disposition.FileName).Value;
                    }
                    var path = queryPath.Length > 0 ? queryPath : fileName;
                    if (string.IsNullOrEmpty(path))
                    {
                        throw new ConnectException(ConnectCode.InvalidArgument, "a multipart part named 'file' needs a filename (its target path), or the upload the path query parameter");
                    }
                    if (pending.Count >= MaxFilesPerUpload)
                    {
                        throw new ConnectException(ConnectCode.InvalidArgument, $"too many files in one upload: at most {MaxFilesPerUpload}");
                    }
                    var upload = Begin(path, user, pending);
                    await reader.ReadPartDataAsync(upload.Write, http.RequestAborted);
                    upload.Finish(metadata);
                }
            }
            finally
            {
                if (ownPipe)
                {
                    await pipe.CompleteAsync();
                }
            }
            if (pending.Count == 0)
            {
                throw new ConnectException(ConnectCode.InvalidArgument, "the multipart body has no part named 'file'");
            }
        }

        private PendingUpload Begin(string requestedPath, AgentUser user, List<PendingUpload> pending)
        {
            var target = PathResolver.Resolve(requestedPath, user, _defaultWorkdir);
            foreach (var other in pending)
            {
                if (other.Target == target)
                {
                    throw new ConnectException(ConnectCode.InvalidArgument, $"cannot upload several files to the same path '{PathResolver.Printable(target)}' in one request");
                }
            }
            var upload = PendingUpload.Create(target, user, _log);
            pending.Add(upload);
            if (pending.Take(pending.Count - 1).Any(other => other.FinalPath == upload.FinalPath))
            {
                throw new ConnectException(ConnectCode.InvalidArgument, $"cannot upload several files to the same path '{PathResolver.Printable(upload.FinalPath)}' in one request (through a symlink)");
            }
            return upload;
        }

        private AgentUser ResolveUser(HttpContext http)
        {
            var name = http.Request.Query["username"].ToString();
            return _users.Resolve(name.Length > 0 ? name : ConnectEndpoints.BasicAuthUser(http));
        }

        private static Stream DecodedBody(HttpContext http)
        {
            var encoding = http.Request.Headers.ContentEncoding.ToString().Trim().ToLowerInvariant();
            return encoding switch
            {
                "" or "identity" => http.Request.Body,
                "gzip" => new GZipStream(http.Request.Body, CompressionMode.Decompress, leaveOpen: true),
                _ => throw new ConnectException(ConnectCode.InvalidArgument, $"unsupported Content-Encoding '{encoding}': send gzip or identity"),
            };
        }

        private static async Task WriteEntriesAsync(HttpContext http, List<PendingUpload> uploads, IReadOnlyDictionary<string, string> metadata)
        {
            using var buffer = new MemoryStream();
            using (var json = new Utf8JsonWriter(buffer))
            {
                json.WriteStartArray();
                foreach (var upload in uploads)
                {
                    json.WriteStartObject();
                    json.WriteString("name", PathResolver.NameOf(upload.Target));
                    json.WriteString("type", "file");
                    json.WriteString("path", upload.Target);
                    if (metadata.Count > 0)
                    {
                        json.WriteStartObject("metadata");
                        foreach (var (key, value) in metadata)
                        {
                            json.WriteString(key, value);
                        }
                        json.WriteEndObject();
                    }
                    json.WriteEndObject();
                }
                json.WriteEndArray();
            }
            http.Response.StatusCode = StatusCodes.Status200OK;
            http.Response.ContentType = "application/json";
            http.Response.ContentLength = buffer.Length;
            await http.Response.Body.WriteAsync(buffer.ToArray(), http.RequestAborted);
        }

        private static async Task DisposeQuietly(Stream stream)
        {
            try
            {
                await stream.DisposeAsync();
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
            {
                // Flushing the gzip trailer to a client that left.
            }
        }
    }
}
