using System.Security.Cryptography;

namespace Paddock.Agent.Filesystem;

/// <summary>
/// Names of the temporary files an upload writes before it renames them over their target. Watches hide them and
/// report the final rename as a write of the target, as E2B's envd (which writes in place) would: an SDK waiting
/// for a write event of <c>a.txt</c> must see one. The suffix says whether the upload replaces an existing file,
/// so the watch can also report a create for a new one.
/// </summary>
internal static class UploadTempNames
{
    private const string Prefix = ".paddock-upload-";
    private const string NewSuffix = ".new";
    private const string ReplaceSuffix = ".replace";

    public static string Create(bool replacing) =>
        Prefix + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + (replacing ? ReplaceSuffix : NewSuffix);

    public static bool IsTemp(string name) => name.StartsWith(Prefix, StringComparison.Ordinal);

    public static bool IsReplacing(string name) => name.EndsWith(ReplaceSuffix, StringComparison.Ordinal);
}
