using System.Buffers.Binary;
using System.Text;

namespace Paddock.Daemon.Tests.Network;

/// <summary>A minimal TLS 1.2-style ClientHello with a server_name extension, built by hand (RFC 8446 4.1.2, RFC 6066 3).</summary>
internal static class ClientHello
{
    public static byte[] Build(string? serverName)
    {
        var extensions = new List<byte>();
        if (serverName is not null)
        {
            var name = Encoding.ASCII.GetBytes(serverName);
            var entry = Concat([0], U16(name.Length), name);          // name_type host_name, HostName
            var list = Concat(U16(entry.Length), entry);               // ServerNameList
            extensions.AddRange(Concat(U16(0), U16(list.Length), list)); // extension server_name
        }
        // supported_groups, so that the SNI is not the only (or last) extension the parser sees
        extensions.AddRange(Concat(U16(10), U16(4), U16(2), U16(0x001d)));
        var body = Concat(
            [3, 3],                       // legacy_version TLS 1.2
            new byte[32],                 // random
            [0],                          // legacy_session_id, empty
            U16(2), [0x13, 0x01],         // cipher_suites: TLS_AES_128_GCM_SHA256
            [1, 0],                       // compression: null
            U16(extensions.Count), extensions.ToArray());
        var handshake = Concat([1, (byte)(body.Length >> 16), (byte)(body.Length >> 8), (byte)body.Length], body);
        return Concat([0x16, 3, 1], U16(handshake.Length), handshake);
    }

    private static byte[] U16(int value)
    {
        var b = new byte[2];
        BinaryPrimitives.WriteUInt16BigEndian(b, (ushort)value);
        return b;
    }

    private static byte[] Concat(params byte[][] parts) => parts.SelectMany(p => p).ToArray();
}
