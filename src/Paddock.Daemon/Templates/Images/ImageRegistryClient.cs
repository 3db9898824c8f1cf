using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Paddock.Daemon.Templates.Images;

/// <summary>
/// Pulls images from the one configured registry with the OCI distribution API (distribution-spec spec.md, "Pull"):
/// <c>GET /v2/NAME/manifests/REF</c> asking for OCI and Docker manifests and indexes, the linux/amd64 manifest of an
/// index, then the config and layers with <c>GET /v2/NAME/blobs/DIGEST</c>. A 401 with a
/// <c>WWW-Authenticate: Bearer realm=…,service=…,scope=…</c> challenge is answered the way Docker's token auth
/// specifies: an anonymous GET of the realm with service and scope, whose token is then sent as
/// <c>Authorization: Bearer</c>. Blobs are checked against their digest and size while they are written and cached
/// under their digest, so a second pull of an image, or of one sharing its layers, downloads only what is new.
/// An https registry is verified against the system's roots, or only against the CA file given with it.
/// </summary>
internal sealed class ImageRegistryClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly string _cache;
    private readonly ILogger _logger;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _tokens = new(StringComparer.Ordinal);

    public ImageRegistryClient(Uri registry, string? caFile, string cacheDirectory, ILogger logger)
    {
        Registry = registry;
        _cache = cacheDirectory;
        _logger = logger;
        var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(10), AutomaticDecompression = DecompressionMethods.None };
        if (caFile is not null)
        {
            var ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                {
                    if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
                    {
                        return false;
                    }
                    using var chain = new X509Chain();
                    chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                    chain.ChainPolicy.CustomTrustStore.Add(ca);
                    chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                    return chain.Build(new X509Certificate2(certificate));
                },
            };
        }
        // Per-call deadlines come from the caller's token; a layer of a few GB may take long on a slow link.
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public Uri Registry { get; }

    /// <summary>Fetches the image's manifest and blobs (into the cache) and returns what to apply.</summary>
    public async Task<ImagePlan> PullAsync(ImageReference reference, long maxBytes, CancellationToken cancellationToken)
    {
        ImagesLog.PullStarted(_logger, reference.ToString(), Registry.ToString());
        try
        {
            var (bytes, mediaType) = await GetManifestAsync(reference.Repository, reference.Reference, cancellationToken);
            var manifestDigest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (reference.IsDigest && manifestDigest != reference.Reference)
            {
                throw ImageImportException.Invalid($"image {reference}: the registry's manifest has digest {manifestDigest}");
            }
            var probe = ImagePlans.ParseJson(bytes, OciJson.Default.OciManifest, $"manifest of {reference}");
            if (MediaTypes.IsIndex(mediaType) || MediaTypes.IsIndex(probe.MediaType) || probe.Manifests is not null)
            {
                var index = ImagePlans.ParseJson(bytes, OciJson.Default.OciIndex, $"index of {reference}");
                var chosen = ImagePlans.PickManifest(index, $"index of {reference}", d => throw ImageImportException.Invalid($"index of {reference}: nested index {d.Digest} is not supported for pulls"), depth: 0);
                (bytes, _) = await GetManifestAsync(reference.Repository, chosen.Digest!, cancellationToken);
                ImagePlans.VerifyBytes(bytes, chosen);
                manifestDigest = chosen.Digest!;
                probe = ImagePlans.ParseJson(bytes, OciJson.Default.OciManifest, $"manifest {manifestDigest}");
            }
            var total = (probe.Layers ?? []).Sum(l => l.Size) + (probe.Config?.Size ?? 0);
            if (total > maxBytes)
            {
                throw new ImageImportException(StatusCodes.Status413PayloadTooLarge, $"image {reference} is {total} bytes compressed, more than this host's limit of {maxBytes}");
            }
            var files = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var descriptor in (probe.Layers ?? []).Prepend(probe.Config ?? new OciDescriptor()))
            {
                if (descriptor.Digest is not null)
                {
                    files[descriptor.Digest] = await GetBlobAsync(reference.Repository, descriptor, cancellationToken);
                }
            }
            var plan = ImagePlans.FromManifest(probe, manifestDigest,
                d => File.ReadAllBytes(files.GetValueOrDefault(d.Digest ?? "") ?? throw ImageImportException.Invalid($"blob {d.Digest} was not fetched")),
                d => files.GetValueOrDefault(d.Digest ?? "") ?? throw ImageImportException.Invalid($"blob {d.Digest} was not fetched"));
            return plan with { Description = $"{reference} from {Registry.Authority} ({manifestDigest})" };
        }
        catch (HttpRequestException ex)
        {
            throw new ImageImportException(StatusCodes.Status502BadGateway,
                $"image {reference}: the registry {Registry} cannot be reached ({ex.Message}); check that it runs and that --image-registry names it", ex);
        }
    }

    private async Task<(byte[] Bytes, string? MediaType)> GetManifestAsync(string repository, string reference, CancellationToken cancellationToken)
    {
        using var response = await SendAsync(repository, $"manifests/{reference}", MediaTypes.ManifestAccept, cancellationToken);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            throw ImageImportException.Invalid($"image {repository}:{reference} is not in the registry {Registry.Authority} (404)");
        }
        await EnsureSuccessAsync(response, $"manifest {repository}:{reference}", cancellationToken);
        if (response.Content.Headers.ContentLength > 4 << 20)
        {
            throw ImageImportException.Invalid($"manifest {repository}:{reference} is larger than 4 MiB");
        }
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        return (bytes, response.Content.Headers.ContentType?.MediaType);
    }

    /// <summary>The cached file of a blob, fetched and verified first when it is not cached.</summary>
    private async Task<string> GetBlobAsync(string repository, OciDescriptor descriptor, CancellationToken cancellationToken)
    {
        var path = Path.Combine(_cache, ImagePlans.BlobPath(descriptor));
        if (File.Exists(path) && new FileInfo(path).Length == descriptor.Size)
        {
            return path;
        }
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var partial = path + ".part-" + Guid.NewGuid().ToString("N")[..8];
        try
        {
            using var response = await SendAsync(repository, $"blobs/{descriptor.Digest}", [], cancellationToken);
            await EnsureSuccessAsync(response, $"blob {descriptor.Digest}", cancellationToken);
            await using (var body = await response.Content.ReadAsStreamAsync(cancellationToken))
            await using (var file = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                var buffer = new byte[1 << 16];
                long written = 0;
                int n;
                while ((n = await body.ReadAsync(buffer, cancellationToken)) > 0)
                {
                    written += n;
                    if (written > descriptor.Size)
                    {
                        throw ImageImportException.Invalid($"blob {descriptor.Digest}: the registry sent more than its {descriptor.Size} bytes");
                    }
                    await file.WriteAsync(buffer.AsMemory(0, n), cancellationToken);
                }
            }
            ImagePlans.Verify(partial, descriptor);
            File.Move(partial, path, overwrite: true);
            ImagesLog.BlobCached(_logger, descriptor.Digest!, descriptor.Size);
            return path;
        }
        finally
        {
            File.Delete(partial);
        }
    }

    /// <summary>A GET of <c>/v2/REPOSITORY/PATH</c>, answering one Bearer challenge.</summary>
    private async Task<HttpResponseMessage> SendAsync(string repository, string path, string[] accept, CancellationToken cancellationToken)
    {
        var url = new Uri(Registry, $"/v2/{repository}/{path}");
        var response = await _http.SendAsync(Request(url, accept, _tokens.GetValueOrDefault(repository)), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (response.StatusCode != HttpStatusCode.Unauthorized)
        {
            return response;
        }
        var challenge = response.Headers.WwwAuthenticate.FirstOrDefault(h => string.Equals(h.Scheme, "Bearer", StringComparison.OrdinalIgnoreCase));
        response.Dispose();
        if (challenge?.Parameter is not { } parameter)
        {
            throw ImageImportException.Invalid($"the registry {Registry.Authority} asks for credentials (401 without a Bearer challenge); this host pulls anonymously");
        }
        var token = await FetchTokenAsync(ParseChallenge(parameter), repository, cancellationToken);
        _tokens[repository] = token;
        return await _http.SendAsync(Request(url, accept, token), HttpCompletionOption.ResponseHeadersRead, cancellationToken);
    }

    private static HttpRequestMessage Request(Uri url, string[] accept, string? token)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, url);
        foreach (var type in accept)
        {
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue(type));
        }
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        return request;
    }

    private async Task<string> FetchTokenAsync(Dictionary<string, string> challenge, string repository, CancellationToken cancellationToken)
    {
        if (!challenge.TryGetValue("realm", out var realm) || !Uri.TryCreate(realm, UriKind.Absolute, out var realmUri) || realmUri.Scheme is not ("http" or "https"))
        {
            throw ImageImportException.Invalid($"the registry {Registry.Authority} sent a Bearer challenge without a usable realm");
        }
        var scope = challenge.GetValueOrDefault("scope") ?? $"repository:{repository}:pull";
        var query = $"scope={Uri.EscapeDataString(scope)}" + (challenge.TryGetValue("service", out var service) ? $"&service={Uri.EscapeDataString(service)}" : "");
        var tokenUrl = new UriBuilder(realmUri) { Query = (realmUri.Query.TrimStart('?') is { Length: > 0 } q ? q + "&" : "") + query }.Uri;
        using var response = await _http.GetAsync(tokenUrl, cancellationToken);
        await EnsureSuccessAsync(response, "token", cancellationToken);
        var bytes = await response.Content.ReadAsByteArrayAsync(cancellationToken);
        var answer = ImagePlans.ParseJson(bytes, OciJson.Default.RegistryToken, "the registry's token answer");
        return answer.Token ?? answer.AccessToken ?? throw ImageImportException.Invalid($"the registry's token service {realmUri.Authority} answered without a token");
    }

    /// <summary>The parameters of a challenge: <c>realm="…",service="…",scope="…"</c> (RFC 7235 auth-params, quoted values).</summary>
    internal static Dictionary<string, string> ParseChallenge(string parameter)
    {
        var values = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        var i = 0;
        // Bounded by the text: every turn consumes at least one character.
        while (i < parameter.Length)
        {
            var eq = parameter.IndexOf('=', i);
            if (eq < 0)
            {
                break;
            }
            var key = parameter[i..eq].Trim().TrimStart(',').Trim();
            string value;
            if (eq + 1 < parameter.Length && parameter[eq + 1] == '"')
            {
                var end = parameter.IndexOf('"', eq + 2);
                end = end < 0 ? parameter.Length : end;
                value = parameter[(eq + 2)..end];
                i = end + 1;
            }
            else
            {
                var end = parameter.IndexOf(',', eq + 1);
                end = end < 0 ? parameter.Length : end;
                value = parameter[(eq + 1)..end].Trim();
                i = end;
            }
            values[key] = value;
            i = Math.Max(i, eq + 1);
        }
        return values;
    }

    private static async Task EnsureSuccessAsync(HttpResponseMessage response, string what, CancellationToken cancellationToken)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        throw new ImageImportException(StatusCodes.Status502BadGateway,
            $"the registry answered {(int)response.StatusCode} for {what}: {(body.Length > 300 ? body[..300] : body)}");
    }

    public void Dispose() => _http.Dispose();
}
