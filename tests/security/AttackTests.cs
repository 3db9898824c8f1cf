using System.Globalization;
using System.Net.Sockets;

namespace Paddock.Security.Tests;

/// <summary>
/// The attack battery: each case runs one attack from inside the attacker sandbox through the real daemon and
/// asserts that it failed the expected way (its output names the errno) and that the host and the neighbour
/// sandbox are unchanged afterwards.
/// </summary>
[Collection(BatteryCollection.Name)]
public sealed class AttackTests(BatteryFixture fixture)
{
    public static TheoryData<string> Names { get; } = new(PrivilegeAttacks.All.Select(a => a.Name));

    [Theory]
    [MemberData(nameof(Names))]
    public async Task Attack_fails_and_leaves_the_host_unchanged(string name)
    {
        var attack = PrivilegeAttacks.All.Single(a => a.Name == name);
        using var abstractSocket = HostAbstractSocket.Listen();
        if (attack.Setup is not null)
        {
            var setup = await fixture.Attacker.RunAsync(attack.Setup, user: "root");
            Assert.True(setup.ExitCode == 0, "setup failed: " + setup);
        }
        var script = (PrivilegeAttacks.Prelude + attack.Script)
            .Replace("{DAEMON_PID}", fixture.Daemon.Pid.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{DAEMON_PORT}", fixture.Daemon.Url.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("{CANARY_DIR}", fixture.CanaryDirectory, StringComparison.Ordinal)
            .Replace("{CANARY_FILE}", fixture.CanaryFile, StringComparison.Ordinal)
            .Replace("{ABSTRACT}", HostAbstractSocket.Name, StringComparison.Ordinal)
            .Replace("{NEIGHBOUR_PORT}", BatteryFixture.NeighbourPort.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal);

        var result = await fixture.Attacker.RunAsync("python3 - <<'PADDOCK_PY'\n" + script + "\nPADDOCK_PY\n", attack.User);

        Assert.True(result.ExitCode == 0, $"the attack script itself failed: {result}");
        Assert.True(attack.Passes(fixture.Attacker.Isolation, result.Stdout), $"expected {attack.ExpectOn(fixture.Attacker.Isolation)} on {fixture.Attacker.Isolation}: {result}");
        await fixture.AssertHostUnchangedAsync();
        // The attacker's sandbox is still usable: a refused attack must not break the sandbox either.
        Assert.Equal("ok\n", (await fixture.Attacker.RunAsync("echo ok")).Stdout);
    }
}

/// <summary>
/// An abstract unix socket listening in the host's network namespace (abstract names are per network namespace:
/// a sandbox that could reach it would share the host's).
/// </summary>
internal sealed class HostAbstractSocket : IDisposable
{
    public static readonly string Name = "paddock-security-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);

    private readonly Socket _socket;

    private HostAbstractSocket(Socket socket) => _socket = socket;

    public static HostAbstractSocket Listen()
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint("\0" + Name));
        socket.Listen(4);
        return new HostAbstractSocket(socket);
    }

    public void Dispose() => _socket.Dispose();
}
