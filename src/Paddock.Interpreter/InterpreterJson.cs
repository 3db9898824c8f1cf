using System.Text.Json.Serialization;

namespace Paddock.Interpreter;

/// <summary>Source-generated JSON (NativeAOT has no reflection-based serializer).</summary>
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(Contexts.ContextInfo))]
[JsonSerializable(typeof(List<Contexts.ContextInfo>))]
internal sealed partial class InterpreterJson : JsonSerializerContext;
