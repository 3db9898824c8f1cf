namespace Paddock.Client.Api;

// Volumes: E2B's /volumes (spec/openapi.yml, tag volumes).
internal sealed partial class ApiClient
{
    public Task<VolumeDto> CreateVolumeAsync(NewVolumeDto request, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Post, "volumes", Json(request, ApiJson.Default.NewVolumeDto), ApiJson.Default.VolumeDto, sandboxId: null, cancellationToken);

    public Task<List<VolumeDto>> ListVolumesAsync(CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, "volumes", null, ApiJson.Default.ListVolumeDto, sandboxId: null, cancellationToken);

    public Task<VolumeDto> GetVolumeAsync(string volumeId, CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, $"volumes/{Escape(volumeId)}", null, ApiJson.Default.VolumeDto, sandboxId: null, cancellationToken);

    public Task DeleteVolumeAsync(string volumeId, CancellationToken cancellationToken) =>
        SendAsync<object>(HttpMethod.Delete, $"volumes/{Escape(volumeId)}", null, null, sandboxId: null, cancellationToken);
}
