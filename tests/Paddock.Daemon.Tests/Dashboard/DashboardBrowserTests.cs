using System.Net;
using PuppeteerSharp;
using PuppeteerSharp.Input;
using Paddock.Daemon.Tests.Api;
using Paddock.Daemon.Tests.Sandboxes;
using Paddock.Daemon.Tests.Teams;
using static Paddock.Daemon.Tests.Api.ApiClient;

namespace Paddock.Daemon.Tests.Dashboard;

/// <summary>
/// The dashboard in a real headless Chromium (Debian's <c>chromium</c>, installed by scripts/setup; no browser is
/// downloaded), against the real daemon, proxy and agents: sign in, the live list, the terminal, an upload, a kill,
/// a refused key, another team's sandbox kept out. Screenshots of each page go to
/// <c>artifacts/test-screenshots/dashboard/</c> at the repository root (or <c>$PADDOCK_TEST_ARTIFACTS/dashboard/</c>).
/// </summary>
public sealed class DashboardBrowserTests : IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private readonly TempDir _state = new();
    private readonly LocalAgentRuntime _runtime = new();
    private TestDaemon _daemon = null!;
    private IBrowser _browser = null!;

    public async Task InitializeAsync()
    {
        _daemon = await TestDaemon.StartAsync(_runtime, _state.Path);
        var chromium = Environment.GetEnvironmentVariable("PADDOCK_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";
        Assert.True(File.Exists(chromium), $"no Chromium at {chromium}: scripts/setup installs Debian's chromium package (or set PADDOCK_CHROMIUM)");
        _browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            ExecutablePath = chromium,
            Headless = true,
            // Root in CI: Chromium's own sandbox refuses to start as root without this; the pages are our own.
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            Timeout = (int)TimeSpan.FromSeconds(60).TotalMilliseconds,
        });
    }

    public async Task DisposeAsync()
    {
        try
        {
            await _browser.CloseAsync();
            await _browser.DisposeAsync();
        }
        finally
        {
            await _daemon.DisposeAsync();
            await _runtime.DisposeAsync();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            _state.Dispose();
        }
    }

    private static string ScreenshotDir()
    {
        if (Environment.GetEnvironmentVariable("PADDOCK_TEST_ARTIFACTS") is { Length: > 0 } root)
        {
            return Directory.CreateDirectory(Path.Combine(root, "dashboard")).FullName;
        }
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Paddock.slnx")))
        {
            dir = dir.Parent;
        }
        return Directory.CreateDirectory(Path.Combine(dir?.FullName ?? Path.GetTempPath(), "artifacts", "test-screenshots", "dashboard")).FullName;
    }

    private static Task ShotAsync(IPage page, string name) =>
        page.ScreenshotAsync(Path.Combine(ScreenshotDir(), name + ".png"), new ScreenshotOptions { FullPage = true });

    private static Task<IElementHandle> WaitForAsync(IPage page, string selector) =>
        page.WaitForSelectorAsync(selector, new WaitForSelectorOptions { Timeout = (int)Wait.TotalMilliseconds, Visible = true });

    private static Task WaitUntilAsync(IPage page, string function, params object[] args) =>
        page.WaitForFunctionAsync(function, new WaitForFunctionOptions { Timeout = (int)Wait.TotalMilliseconds, PollingInterval = 100 }, args);

    /// <summary>What the terminal shows now (xterm's DOM renderer: one element per row).</summary>
    private const string TerminalText = "() => Array.from(document.querySelectorAll('#terminal .xterm-rows > div')).map(r => r.textContent).join('\\n')";

    private async Task<IPage> SignInAsync(string key)
    {
        var page = await _browser.NewPageAsync();
        page.DefaultTimeout = (int)Wait.TotalMilliseconds;
        await page.SetViewportAsync(new ViewPortOptions { Width = 1280, Height = 800 });
        page.Dialog += async (_, e) => await e.Dialog.Accept();
        await page.GoToAsync(new Uri(_daemon.BaseAddress, "/dashboard/").ToString());
        await WaitForAsync(page, "#api-key");
        await page.TypeAsync("#api-key", key);
        await page.ClickAsync("#sign-in");
        return page;
    }

    [Fact]
    public async Task Sign_in_see_a_sandbox_use_its_terminal_upload_a_file_and_kill_it()
    {
        var team = await TenantApi.CreateTeamAsync(_daemon, TenantApi.UniqueName("browser"));
        var (key, _) = await TenantApi.CreateKeyAsync(_daemon, team);
        var (_, _, otherTeam) = await TenantApi.TeamWithClientAsync(_daemon);
        using var teamApi = TenantApi.ClientFor(_daemon, key);
        string? mine = null;
        string? theirs = null;
        IPage? page = null;
        try
        {
            // A wrong key is refused, and nothing of the app shows.
            var refused = await SignInAsync("e2b_0000000000000000000000000000000000000000");
            await WaitUntilAsync(refused, "() => document.querySelector('#sign-in-error').textContent.includes('invalid API key')");
            Assert.True(await refused.EvaluateFunctionAsync<bool>("() => document.querySelector('#app').hidden"));
            await ShotAsync(refused, "01-sign-in-refused");
            await refused.CloseAsync();

            page = await SignInAsync(key);
            await WaitForAsync(page, "#sandboxes");
            // Made through the API after the page is open: the live list picks it up.
            theirs = await TenantApi.CreateSandboxAsync(otherTeam, """{"templateID":"base","timeout":120}""");
            mine = await TenantApi.CreateSandboxAsync(teamApi, """{"templateID":"base","timeout":120,"metadata":{"owner":"browser-test"}}""");
            await WaitForAsync(page, $"tr[data-sandbox-id='{mine}']");
            Assert.Null(await page.QuerySelectorAsync($"tr[data-sandbox-id='{theirs}']"));
            Assert.Equal(1, await page.EvaluateFunctionAsync<int>("() => document.querySelectorAll('tr[data-sandbox-id]').length"));
            Assert.Equal("running", await page.EvaluateFunctionAsync<string>($"() => document.querySelector(\"tr[data-sandbox-id='{mine}'] .state\").textContent"));
            await ShotAsync(page, "02-sandboxes");

            // The terminal: a real shell in the sandbox through the daemon.
            // Clicked in one step in the page: the live list redraws every 2 s, and a link found before a redraw and
            // clicked after it would be gone.
            await page.EvaluateFunctionAsync("sel => document.querySelector(sel).click()", $"tr[data-sandbox-id='{mine}'] a");
            await WaitUntilAsync(page, "() => document.querySelector('#terminal-status')?.textContent === 'connected'");
            await page.ClickAsync("#terminal");
            await page.Keyboard.TypeAsync("echo $((6*7))");
            await page.Keyboard.PressAsync(Key.Enter);
            await WaitUntilAsync(page, $"() => ({TerminalText})().split('\\n').some(l => l.trim() === '42')");
            await ShotAsync(page, "03-terminal");

            // Resize: the page's new size reaches the PTY (stty reads it from the terminal itself).
            var before = await page.EvaluateFunctionAsync<string>("() => document.querySelector('#terminal-size').textContent");
            await page.SetViewportAsync(new ViewPortOptions { Width = 900, Height = 600 });
            await WaitUntilAsync(page, "before => document.querySelector('#terminal-size').textContent !== before", before);
            var size = (await page.EvaluateFunctionAsync<string>("() => document.querySelector('#terminal-size').textContent")).Split('x');
            await page.Keyboard.TypeAsync("stty size");
            await page.Keyboard.PressAsync(Key.Enter);
            await WaitUntilAsync(page, $"() => ({TerminalText})().split('\\n').some(l => l.trim() === '{size[1]} {size[0]}')");

            // Ctrl-C ends a running command and the shell answers again. The command says when it runs (from the
            // process that then becomes sleep), so the Ctrl-C cannot arrive before it is the terminal's foreground job.
            await page.Keyboard.TypeAsync("bash -c 'echo ready-$((1+1)); exec sleep 600'");
            await page.Keyboard.PressAsync(Key.Enter);
            await WaitUntilAsync(page, $"() => ({TerminalText})().split('\\n').some(l => l.trim() === 'ready-2')");
            await page.Keyboard.DownAsync(Key.Control);
            await page.Keyboard.PressAsync("c");
            await page.Keyboard.UpAsync(Key.Control);
            await page.Keyboard.TypeAsync("echo after-$((40+2))");
            await page.Keyboard.PressAsync(Key.Enter);
            await WaitUntilAsync(page, $"() => ({TerminalText})().split('\\n').some(l => l.trim() === 'after-42')");
            await ShotAsync(page, "04-terminal-resized");

            // Upload through the file browser, then find the file with ls in the terminal.
            var dir = Directory.CreateDirectory(Path.Combine(_state.Path, "uploads")).FullName;
            var local = Path.Combine(_state.Path, "hello-dashboard.txt");
            await File.WriteAllTextAsync(local, "from the browser\n");
            await page.ClickAsync("#tab-files");
            var path = await WaitForAsync(page, "#files-path");
            await path.ClickAsync(new ClickOptions { Count = 3 });
            await page.Keyboard.TypeAsync(dir);
            await page.Keyboard.PressAsync(Key.Enter);
            var input = await WaitForAsync(page, "#upload-input");
            await input.UploadFileAsync(local);
            await WaitUntilAsync(page, "() => document.querySelector('#upload-status').textContent.startsWith('uploaded')");
            await WaitForAsync(page, $"tr[data-path='{dir}/hello-dashboard.txt']");
            await ShotAsync(page, "05-files");
            await page.ClickAsync("#tab-terminal");
            await WaitUntilAsync(page, "() => document.querySelector('#terminal-status')?.textContent === 'connected'");
            await page.ClickAsync("#terminal");
            await page.Keyboard.TypeAsync($"ls {dir}");
            await page.Keyboard.PressAsync(Key.Enter);
            await WaitUntilAsync(page, $"() => ({TerminalText})().split('\\n').some(l => l.trim() === 'hello-dashboard.txt')");

            // The commands tab lists the terminal sessions from the audit trail.
            await page.ClickAsync("#tab-commands");
            await WaitForAsync(page, "#commands table");
            // Two terminals, each ended when its tab was left (the page closes its socket, the daemon kills the shell):
            // both with their end read from the audit trail.
            await WaitUntilAsync(page, "() => { const cells = Array.from(document.querySelectorAll('#commands .exit-code')).map(c => c.textContent); "
                + "return cells.length === 2 && cells.every(c => c.startsWith('signal: killed')); }");
            await ShotAsync(page, "06-commands");
            await page.ClickAsync("#tab-audit");
            await WaitForAsync(page, "#audit table");
            await ShotAsync(page, "07-audit");

            // Kill from the page (the confirm dialog is accepted above).
            await page.ClickAsync("#kill-sandbox");
            await WaitForAsync(page, "#sandboxes");
            await WaitUntilAsync(page, $"() => !document.querySelector(\"tr[data-sandbox-id='{mine}']\")");
            Assert.False(_daemon.Manager.TryGetRunning(mine, out _));
            await ShotAsync(page, "08-after-kill");

            await page.GoToAsync(new Uri(_daemon.BaseAddress, "/dashboard/#/host").ToString());
            await WaitForAsync(page, "#host table");
            await ShotAsync(page, "09-host");
            await page.GoToAsync(new Uri(_daemon.BaseAddress, "/dashboard/#/templates").ToString());
            await WaitForAsync(page, "#templates table");
            await ShotAsync(page, "10-templates");
        }
        catch when (page is not null)
        {
            await ShotAsync(page!, "failure");
            throw;
        }
        finally
        {
            foreach (var (client, id) in new[] { (teamApi, mine), (otherTeam, theirs) })
            {
                if (id is not null && _daemon.Manager.TryGetRunning(id, out _))
                {
                    await SendAsync(client, HttpMethod.Delete, $"/sandboxes/{id}");
                }
            }
            otherTeam.Dispose();
        }
    }
}
