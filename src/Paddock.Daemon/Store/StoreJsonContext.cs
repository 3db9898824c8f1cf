using System.Text.Json.Serialization;

namespace Paddock.Daemon.Store;

/// <summary>Metadata is stored as one JSON object per sandbox.</summary>
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class StoreJsonContext : JsonSerializerContext;
