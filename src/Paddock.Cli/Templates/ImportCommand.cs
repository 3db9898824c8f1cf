using System.CommandLine;
using System.Formats.Tar;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;

// Not Paddock.Cli.Templates, as the folder: that namespace would hide Paddock.Client's Templates class from the
// commands in Paddock.Cli.
namespace Paddock.Cli.ImageImport;

/// <summary>
/// `paddock template import FILE|DIR --name N`: sends an image to the daemon's <c>POST /templates/import</c>. A FILE
/// is sent as it is (a docker save archive, or a tarred OCI layout; tar or tar.gz); a DIR (an OCI image layout) is
/// tarred while it is sent, so nothing is staged on the client's disk. The daemon checks and unpacks it.
/// </summary>
internal static class ImportCommand
{
    /// <summary>Adds `import` to the `template` command of <paramref name="root"/>.</summary>
    public static void AddTo(RootCommand root) =>
        root.Subcommands.First(c => c.Name == "template").Subcommands.Add(Build());

    public static Command Build()
    {
        var source = new Argument<string>("source") { Description = "An image archive (docker save, or a tarred OCI layout; tar or tar.gz) or an OCI image layout directory" };
        var name = new Option<string>("--name") { Description = "The template's name (a template of the team with this name gives it up)", Required = true };
        var command = new Command("import", "Import an OCI image or docker save archive as a template") { source, name };
        command.SetAction(CliApp.Action(async (parse, settings, ct) =>
        {
            var path = parse.GetValue(source)!;
            var templateName = parse.GetValue(name)!;
            HttpContent content;
            if (Directory.Exists(path))
            {
                if (!File.Exists(Path.Combine(path, "index.json")))
                {
                    throw new CliException(ExitCodes.Usage, $"{path} is not an OCI image layout (it has no index.json)");
                }
                content = new DirectoryTarContent(path);
                content.Headers.ContentType = new MediaTypeHeaderValue("application/x-tar");
            }
            else if (File.Exists(path))
            {
                var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
                var magic = new byte[2];
                var gzip = await file.ReadAsync(magic, ct) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
                file.Position = 0;
                content = new StreamContent(file, 1 << 16);
                content.Headers.ContentType = new MediaTypeHeaderValue(gzip ? "application/gzip" : "application/x-tar");
            }
            else
            {
                throw new CliException(ExitCodes.NotFound, $"no such file or directory: {path}");
            }
            using (content)
            {
                var body = await SendAsync(settings, templateName, content, ct);
                if (parse.GetValue(CliApp.Json))
                {
                    Console.Out.Write(body + "\n");
                    return ExitCodes.Ok;
                }
                using var doc = JsonDocument.Parse(body);
                var r = doc.RootElement;
                Console.Out.Write($"imported {path} as template {r.GetProperty("templateID").GetString()} ({templateName}): "
                    + $"{r.GetProperty("imageLayers").GetInt32()} layers, {r.GetProperty("sizeBytes").GetInt64() / (1 << 20)} MiB\n");
                foreach (var note in r.GetProperty("notes").EnumerateArray())
                {
                    Console.Out.Write($"note: {note.GetString()}\n");
                }
                return ExitCodes.Ok;
            }
        }));
        return command;
    }

    private static async Task<string> SendAsync(CliSettings settings, string name, HttpContent content, CancellationToken cancellationToken)
    {
        // An import of a large image takes as long as its upload and unpacking: no overall timeout, Ctrl-C cancels.
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(settings.ApiUrl, "/templates/import?name=" + Uri.EscapeDataString(name))) { Content = content };
        if (settings.Connection.ApiKey is { } key)
        {
            request.Headers.Add("X-API-Key", key);
        }
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, cancellationToken);
        }
        catch (HttpRequestException ex)
        {
            throw new CliException(ExitCodes.Unavailable, $"cannot reach the Paddock daemon at {settings.ApiUrl.GetLeftPart(UriPartial.Authority)} ({ex.Message}). Is it running?", ex);
        }
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            if (response.IsSuccessStatusCode)
            {
                return body;
            }
            var message = body;
            try
            {
                using var doc = JsonDocument.Parse(body);
                message = doc.RootElement.GetProperty("message").GetString() ?? body;
            }
            catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                // Not E2B's {code, message}: show the body as it came.
            }
            throw new CliException(response.StatusCode switch
            {
                HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden => ExitCodes.NoPermission,
                _ => ExitCodes.Failure,
            }, $"import refused ({(int)response.StatusCode}): {message}");
        }
    }

    /// <summary>A directory as a tar, written as the request is sent.</summary>
    private sealed class DirectoryTarContent(string directory) : HttpContent
    {
        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context) =>
            TarFile.CreateFromDirectoryAsync(directory, stream, includeBaseDirectory: false);

        protected override Task SerializeToStreamAsync(Stream stream, TransportContext? context, CancellationToken cancellationToken) =>
            TarFile.CreateFromDirectoryAsync(directory, stream, includeBaseDirectory: false, cancellationToken);

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
