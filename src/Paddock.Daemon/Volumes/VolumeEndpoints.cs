using Paddock.Daemon.Api;
using Paddock.Daemon.Auth;
using Paddock.Daemon.Sandboxes;

namespace Paddock.Daemon.Volumes;

/// <summary>
/// E2B's volume control plane (spec/openapi.yml, tag volumes), team-scoped by the caller's API key: another team's
/// volume answers exactly as an unknown one (404).
/// </summary>
internal static class VolumeEndpoints
{
    public static void MapVolumeApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/volumes", CreateAsync);
        app.MapGet("/volumes", ListAsync);
        app.MapGet("/volumes/{volumeID}", GetAsync);
        app.MapDelete("/volumes/{volumeID}", DeleteAsync);
        app.MapVolumeContentApi();
    }

    private static async Task<IResult> CreateAsync(HttpContext http, VolumeManager volumes)
    {
        var request = await SandboxEndpoints.ReadBodyAsync(http, VolumeJsonContext.Default.NewVolumeRequest, required: true);
        var volume = await volumes.CreateAsync(http.GetCaller().TeamId, request!.Name, request.SizeMB, http.RequestAborted);
        return Results.Json(ToVolumeAndToken(volume), VolumeJsonContext.Default.VolumeAndTokenResponse, statusCode: StatusCodes.Status201Created);
    }

    private static async Task<IResult> ListAsync(HttpContext http, VolumeManager volumes)
    {
        var list = await volumes.ListAsync(http.GetCaller().TeamId, http.RequestAborted);
        return Results.Json(list.Select(v => new VolumeResponse(v.VolumeId, v.Name, v.SizeBytes / (1024 * 1024))).ToList(),
            VolumeJsonContext.Default.ListVolumeResponse);
    }

    private static async Task<IResult> GetAsync(string volumeID, HttpContext http, VolumeManager volumes)
    {
        var volume = await volumes.GetAsync(http.GetCaller().TeamId, volumeID, http.RequestAborted);
        return Results.Json(ToVolumeAndToken(volume), VolumeJsonContext.Default.VolumeAndTokenResponse);
    }

    private static async Task<IResult> DeleteAsync(string volumeID, HttpContext http, VolumeManager volumes, SandboxManager sandboxes)
    {
        // A paused sandbox is a user too: its resume binds the volume again (SandboxManager.PauseAsync).
        await volumes.DeleteAsync(http.GetCaller().TeamId, volumeID,
            id => sandboxes.TryGetRunning(id, out _) || sandboxes.TryGetPaused(id, out _), http.RequestAborted);
        return Results.NoContent();
    }

    private static VolumeAndTokenResponse ToVolumeAndToken(VolumeRecord v) => new(v.VolumeId, v.Name, v.Token, v.SizeBytes / (1024 * 1024));
}
