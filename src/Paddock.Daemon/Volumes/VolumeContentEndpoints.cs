using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using Paddock.Daemon.Api;
using Paddock.Daemon.Native;
using Paddock.Daemon.Runtimes;
using static Paddock.Daemon.Native.BeneathRoot;

namespace Paddock.Daemon.Volumes;

/// <summary>
/// E2B's volume content API, as SDK 2.51's <c>Volume</c> class calls it (<c>/volumecontent/{volumeID}/dir|file|path</c>
/// with the volume's token as a Bearer token; no API key): list, make directories, read and write files, stat,
/// change owner and mode, remove. The daemon works on the volume's mounted image directly, whether or not a sandbox
/// has it mounted. Every path resolves inside the volume (<see cref="BeneathRoot"/>): a symlink a sandbox left there
/// cannot lead the daemon, which runs as root, to the host's files. Ids in and out are the sandboxes' (inside the
/// user namespace); errors are the API's <c>{code, message}</c> with a string code.
/// </summary>
internal static class VolumeContentEndpoints
{
    private const int MaxDepth = 16;
    private const uint DefaultFileMode = 0x1A4; // 0644
    private const uint DefaultDirectoryMode = 0x1ED; // 0755
    private const int ENOSPC = 28;
    private const int ENOTEMPTY = 39;
    private const int EDQUOT = 122;

    public static void MapVolumeContentApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/volumecontent/{volumeID}/dir", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, ListAsync));
        app.MapPost("/volumecontent/{volumeID}/dir", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, MakeDirAsync));
        app.MapGet("/volumecontent/{volumeID}/file", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, ReadAsync));
        app.MapPut("/volumecontent/{volumeID}/file", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, WriteAsync));
        app.MapGet("/volumecontent/{volumeID}/path", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, StatAsync));
        app.MapDelete("/volumecontent/{volumeID}/path", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, RemoveAsync));
        app.MapPatch("/volumecontent/{volumeID}/path", (string volumeID, HttpContext http, VolumeManager volumes) => Run(http, volumes, volumeID, UpdateAsync));
    }

    /// <summary>A request's error: status, the content API's string code, and what was wrong.</summary>
    private sealed class ContentException(int status, string message) : Exception(message)
    {
        public int Status { get; } = status;
    }

    private sealed record Context(HttpContext Http, SafeFileHandle Root, string Path);

    private static async Task Run(HttpContext http, VolumeManager volumes, string volumeId, Func<Context, Task> handler)
    {
        try
        {
            var header = http.Request.Headers.Authorization.ToString();
            var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim() : null;
            // Unknown volume and wrong token answer alike: the token is the credential, and no oracle of ids.
            var volume = await volumes.AuthorizeContentAsync(volumeId, token, http.RequestAborted)
                ?? throw new ContentException(StatusCodes.Status401Unauthorized, "missing or invalid volume token (Authorization: Bearer <the token of the volume's create>)");
            if (!await volumes.Disks.EnsureMountedAsync(volume.VolumeId, http.RequestAborted))
            {
                throw new ContentException(StatusCodes.Status500InternalServerError, $"volume {volume.VolumeId} has no image on this host");
            }
            using var root = OpenRoot(volumes.Disks.DataOf(volume.VolumeId));
            await handler(new Context(http, root, ParsePath(http.Request.Query["path"].ToString())));
        }
        catch (ContentException ex) when (!http.Response.HasStarted)
        {
            await WriteErrorAsync(http, ex.Status, ex.Message);
        }
        catch (IOException ex) when (!http.Response.HasStarted && ex.HResult is ENOSPC or EDQUOT)
        {
            await WriteErrorAsync(http, StatusCodes.Status507InsufficientStorage, "the volume is full (no space left on device)");
        }
    }

    private static Task WriteErrorAsync(HttpContext http, int status, string message)
    {
        http.Response.StatusCode = status;
        http.Response.ContentType = "application/json";
        return JsonSerializer.SerializeAsync(http.Response.Body,
            new VolumeContentError(status.ToString(System.Globalization.CultureInfo.InvariantCulture), message),
            VolumeJsonContext.Default.VolumeContentError, http.RequestAborted);
    }

    /// <summary>The path relative to the volume's root ("" for the root). '..' is refused, not resolved.</summary>
    private static string ParsePath(string path)
    {
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ContentException(StatusCodes.Status400BadRequest, "path contains a NUL character");
        }
        if (path.Length > 4096)
        {
            throw new ContentException(StatusCodes.Status400BadRequest, "path is longer than 4096 characters");
        }
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        if (parts.Any(p => p == ".."))
        {
            throw new ContentException(StatusCodes.Status400BadRequest, $"path '{path}' must not contain '..'");
        }
        return string.Join('/', parts);
    }

    private static (string Parent, string Name) Split(string path)
    {
        if (path.Length == 0)
        {
            throw new ContentException(StatusCodes.Status400BadRequest, "this operation needs a path below the volume's root");
        }
        var slash = path.LastIndexOf('/');
        return slash < 0 ? ("", path) : (path[..slash], path[(slash + 1)..]);
    }

    private static Exception Fail(int errno, string path) => errno switch
    {
        Errno.ENOENT or Errno.ENOTDIR => new ContentException(StatusCodes.Status404NotFound, $"path '/{path}' not found"),
        Errno.EEXIST => new ContentException(StatusCodes.Status409Conflict, $"path '/{path}' exists already"),
        ENOTEMPTY => new ContentException(StatusCodes.Status409Conflict, $"directory '/{path}' is not empty"),
        ENOSPC or EDQUOT => new ContentException(StatusCodes.Status507InsufficientStorage, "the volume is full (no space left on device)"),
        18 => new ContentException(StatusCodes.Status400BadRequest, $"path '/{path}' leaves the volume"), // EXDEV from RESOLVE_NO_XDEV
        40 => new ContentException(StatusCodes.Status400BadRequest, $"path '/{path}' has too many symlinks or levels"), // ELOOP
        21 => new ContentException(StatusCodes.Status400BadRequest, $"path '/{path}' is a directory"), // EISDIR
        _ => new IOException($"/{path}: {Errno.Describe(errno)} (errno {errno})", errno),
    };

    private static SafeFileHandle OpenOrFail(SafeFileHandle root, string path, int flags, uint mode = 0)
    {
        var errno = Open(root, path, flags, mode, out var handle);
        if (errno != 0)
        {
            handle.Dispose();
            throw Fail(errno, path);
        }
        return handle;
    }

    private static uint QueryId(HttpContext http, string name)
    {
        var text = http.Request.Query[name].ToString();
        if (text.Length == 0)
        {
            return 0;
        }
        return uint.TryParse(text, out var id) && id < IdMapping.Default.Size
            ? id
            : throw new ContentException(StatusCodes.Status400BadRequest, $"{name} must be an id between 0 and {IdMapping.Default.Size - 1}");
    }

    private static uint? QueryMode(HttpContext http)
    {
        var text = http.Request.Query["mode"].ToString();
        return text.Length == 0 ? null
            : uint.TryParse(text, out var mode) && mode <= 0xFFF ? mode
            : throw new ContentException(StatusCodes.Status400BadRequest, "mode must be a permission mode between 0 and 4095 (07777)");
    }

    private static bool QueryFlag(HttpContext http, string name) => http.Request.Query[name].ToString() is "true" or "1";

    private static uint Inside(uint hostId) => IdMapping.Default.ContainsHostId(hostId) ? hostId - IdMapping.Default.HostBase : 65534;

    private static VolumeEntryStat Describe(SafeFileHandle directory, string name, string path)
    {
        var errno = Stat(directory, name, out var entry);
        if (errno != 0)
        {
            throw Fail(errno, path);
        }
        string? target = null;
        if (entry.Type == Files.S_IFLNK && name.Length == 0)
        {
            target = ReadLink(directory);
        }
        else if (entry.Type == Files.S_IFLNK && OpenAt(directory, name, O_PATH, 0, out var link) == 0)
        {
            using (link)
            {
                target = ReadLink(link);
            }
        }
        var type = entry.Type switch
        {
            Files.S_IFREG => "file",
            Files.S_IFDIR => "directory",
            Files.S_IFLNK => "symlink",
            _ => "unknown",
        };
        var entryName = path.Length == 0 ? "/" : path[(path.LastIndexOf('/') + 1)..];
        return new VolumeEntryStat(entryName, "/" + path, type, entry.Size, entry.Mode & 0xFFF, Inside(entry.Uid), Inside(entry.Gid),
            entry.Atime, entry.Mtime, entry.Ctime, target);
    }

    private static VolumeEntryStat DescribePath(SafeFileHandle root, string path)
    {
        using var handle = OpenOrFail(root, path, O_PATH | O_NOFOLLOW);
        return Describe(handle, "", path);
    }

    private static Task ListAsync(Context c)
    {
        var depthText = c.Http.Request.Query["depth"].ToString();
        var depth = depthText.Length == 0 ? 1
            : int.TryParse(depthText, out var d) && d >= 1 && d <= MaxDepth ? d
            : throw new ContentException(StatusCodes.Status400BadRequest, $"depth must be between 1 and {MaxDepth}");
        using var directory = OpenOrFail(c.Root, c.Path, O_RDONLY | O_DIRECTORY);
        var entries = new List<VolumeEntryStat>();
        List(directory, c.Path, depth, entries);
        return Results.Json(entries, VolumeJsonContext.Default.ListVolumeEntryStat).ExecuteAsync(c.Http);
    }

    private static void List(SafeFileHandle directory, string path, int depth, List<VolumeEntryStat> entries)
    {
        foreach (var name in Names(directory).Order(StringComparer.Ordinal))
        {
            var childPath = path.Length == 0 ? name : path + "/" + name;
            VolumeEntryStat entry;
            try
            {
                entry = Describe(directory, name, childPath);
            }
            catch (ContentException)
            {
                continue; // removed meanwhile (by a sandbox)
            }
            entries.Add(entry);
            if (depth > 1 && entry.Type == "directory" && OpenAt(directory, name, O_RDONLY | O_DIRECTORY, 0, out var child) == 0)
            {
                using (child)
                {
                    List(child, childPath, depth - 1, entries);
                }
            }
        }
    }

    private static Task MakeDirAsync(Context c)
    {
        var (parentPath, name) = Split(c.Path);
        var uid = IdMapping.Default.ToHost(QueryId(c.Http, "uid"));
        var gid = IdMapping.Default.ToHost(QueryId(c.Http, "gid"));
        var mode = QueryMode(c.Http) ?? DefaultDirectoryMode;
        var force = QueryFlag(c.Http, "force");
        SafeFileHandle parent;
        if (force)
        {
            // Parents made as needed, one name at a time, each owned as asked.
            parent = OpenOrFail(c.Root, "", O_PATH | O_DIRECTORY);
            foreach (var part in parentPath.Split('/', StringSplitOptions.RemoveEmptyEntries))
            {
                using var current = parent;
                var made = MakeDirectory(current, part, mode);
                if (made == 0)
                {
                    ChangeOwner(current, part, uid, gid);
                }
                else if (made != Errno.EEXIST)
                {
                    throw Fail(made, parentPath);
                }
                var errno = OpenAt(current, part, O_PATH | O_DIRECTORY, 0, out parent);
                if (errno != 0)
                {
                    parent.Dispose();
                    throw Fail(errno, parentPath);
                }
            }
        }
        else
        {
            parent = OpenOrFail(c.Root, parentPath, O_PATH | O_DIRECTORY);
        }
        using (parent)
        {
            var errno = MakeDirectory(parent, name, mode);
            if (errno != 0 && !(force && errno == Errno.EEXIST))
            {
                throw Fail(errno, c.Path);
            }
            errno = ChangeOwner(parent, name, uid, gid);
            if (errno != 0)
            {
                throw Fail(errno, c.Path);
            }
            using var made = OpenOrFail(c.Root, c.Path, O_PATH | O_NOFOLLOW);
            ChangeMode(made, mode); // mkdir's mode passes through the umask
            return Results.Json(Describe(made, "", c.Path), VolumeJsonContext.Default.VolumeEntryStat, statusCode: StatusCodes.Status201Created).ExecuteAsync(c.Http);
        }
    }

    private static async Task ReadAsync(Context c)
    {
        using var handle = OpenOrFail(c.Root, c.Path, O_RDONLY | O_NOFOLLOW);
        var errno = Stat(handle, "", out var entry);
        if (errno != 0)
        {
            throw Fail(errno, c.Path);
        }
        if (entry.Type != Files.S_IFREG)
        {
            throw new ContentException(StatusCodes.Status400BadRequest, $"path '/{c.Path}' is not a regular file");
        }
        c.Http.Response.ContentType = "application/octet-stream";
        c.Http.Response.ContentLength = entry.Size;
        await using var stream = new FileStream(handle, FileAccess.Read, bufferSize: 0);
        await stream.CopyToAsync(c.Http.Response.Body, 64 * 1024, c.Http.RequestAborted);
    }

    private static async Task WriteAsync(Context c)
    {
        var (parentPath, name) = Split(c.Path);
        var uid = IdMapping.Default.ToHost(QueryId(c.Http, "uid"));
        var gid = IdMapping.Default.ToHost(QueryId(c.Http, "gid"));
        var mode = QueryMode(c.Http) ?? DefaultFileMode;
        using var parent = OpenOrFail(c.Root, parentPath, O_PATH | O_DIRECTORY);
        // O_NOFOLLOW on the one name: a symlink there is refused (ELOOP), never written through.
        var errno = OpenAt(parent, name, O_WRONLY | O_CREAT | O_TRUNC, mode, out var handle);
        if (errno != 0)
        {
            handle.Dispose();
            throw Fail(errno, c.Path);
        }
        try
        {
            await using var stream = new FileStream(handle, FileAccess.Write, bufferSize: 0);
            await c.Http.Request.Body.CopyToAsync(stream, 64 * 1024, c.Http.RequestAborted);
            await stream.FlushAsync(c.Http.RequestAborted);
        }
        catch (IOException ex) when (ex.HResult is ENOSPC or EDQUOT)
        {
            // A full volume: the partial file goes, and the rest of the body is read and dropped so that the client
            // gets the 507 instead of a reset connection.
            Remove(parent, name);
            await c.Http.Request.Body.CopyToAsync(Stream.Null, c.Http.RequestAborted);
            throw new ContentException(StatusCodes.Status507InsufficientStorage, $"the volume is full (no space left on device) writing '/{c.Path}'");
        }
        ChangeOwner(parent, name, uid, gid);
        using var written = OpenOrFail(c.Root, c.Path, O_PATH | O_NOFOLLOW);
        ChangeMode(written, mode);
        await Results.Json(Describe(written, "", c.Path), VolumeJsonContext.Default.VolumeEntryStat, statusCode: StatusCodes.Status201Created).ExecuteAsync(c.Http);
    }

    private static Task StatAsync(Context c) =>
        Results.Json(DescribePath(c.Root, c.Path), VolumeJsonContext.Default.VolumeEntryStat).ExecuteAsync(c.Http);

    private static Task RemoveAsync(Context c)
    {
        var (parentPath, name) = Split(c.Path);
        using var parent = OpenOrFail(c.Root, parentPath, O_RDONLY | O_DIRECTORY);
        var errno = Remove(parent, name);
        if (errno != 0)
        {
            throw Fail(errno, c.Path);
        }
        return Results.NoContent().ExecuteAsync(c.Http);
    }

    private static async Task UpdateAsync(Context c)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(c.Http, VolumeJsonContext.Default.VolumeMetadataRequest, required: true);
        if (request!.Uid is >= 65536 || request.Gid is >= 65536 || request.Mode is > 0xFFF)
        {
            throw new ContentException(StatusCodes.Status400BadRequest, $"uid and gid must be below {IdMapping.Default.Size}, mode at most 4095 (07777)");
        }
        using var handle = OpenOrFail(c.Root, c.Path, O_PATH | O_NOFOLLOW);
        var errno = Stat(handle, "", out var entry);
        if (errno != 0)
        {
            throw Fail(errno, c.Path);
        }
        if (request.Uid is not null || request.Gid is not null)
        {
            errno = ChangeOwner(handle, "",
                request.Uid is { } u ? IdMapping.Default.ToHost(u) : entry.Uid,
                request.Gid is { } g ? IdMapping.Default.ToHost(g) : entry.Gid);
            if (errno != 0)
            {
                throw Fail(errno, c.Path);
            }
        }
        if (request.Mode is { } mode)
        {
            if (entry.Type == Files.S_IFLNK)
            {
                throw new ContentException(StatusCodes.Status400BadRequest, $"path '/{c.Path}' is a symlink: its mode cannot be changed");
            }
            errno = ChangeMode(handle, mode);
            if (errno != 0)
            {
                throw Fail(errno, c.Path);
            }
        }
        await Results.Json(Describe(handle, "", c.Path), VolumeJsonContext.Default.VolumeEntryStat).ExecuteAsync(c.Http);
    }
}
