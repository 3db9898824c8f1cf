// Paddock's MCP server (issue 18) through the official TypeScript MCP SDK as the client, over both transports:
// stdio (`paddock mcp`, the CLI over the daemon's API) and Streamable HTTP (paddockd's /mcp with X-API-Key).
// The same scenario runs on each: list the tools, create a sandbox, run python, write and read a file, serve a port
// and fetch from its URL, tool errors (unknown sandbox, command timeout, no code interpreter), kill.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { existsSync } from 'node:fs'
import path from 'node:path'
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { getViaHost, repoRoot, startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const skip = whyNotRunnable()
const T = { timeout: 120_000 }
// The first create may build the base template (debootstrap) when the shared cache is cold.
const CREATE = { timeout: 15 * 60_000 }
const TOOLS = ['create_sandbox', 'list_sandboxes', 'run_command', 'run_code', 'read_file', 'write_file', 'list_files', 'get_port_url', 'set_sandbox_timeout', 'kill_sandbox', 'pause_sandbox', 'resume_sandbox', 'fork_sandbox']

/** The CLI: $PADDOCK_CLI_BINARY, else the Release build, else the Debug build. */
function cliBinary() {
  if (process.env.PADDOCK_CLI_BINARY) {
    return process.env.PADDOCK_CLI_BINARY
  }
  for (const config of ['Release', 'Debug']) {
    const candidate = path.join(repoRoot, 'src', 'Paddock.Cli', 'bin', config, 'net10.0', 'paddock')
    if (existsSync(candidate)) {
      return candidate
    }
  }
  throw new Error('paddock (the CLI) is not built: run scripts/setup first (or set PADDOCK_CLI_BINARY)')
}

function stdioTransport(daemon, apiKey) {
  return new StdioClientTransport({
    command: cliBinary(),
    args: ['mcp'],
    env: { PATH: process.env.PATH, HOME: process.env.HOME ?? '/root', DOTNET_ROOT: process.env.DOTNET_ROOT ?? '', PADDOCK_URL: daemon.url, PADDOCK_API_KEY: apiKey },
    stderr: 'pipe',
  })
}

function httpTransport(daemon, apiKey) {
  return new StreamableHTTPClientTransport(new URL(`${daemon.url}/mcp`), { requestInit: { headers: { 'X-API-Key': apiKey } } })
}

async function connect(transport) {
  const client = new Client({ name: 'paddock-mcp-test', version: '1.0.0' })
  await client.connect(transport, { timeout: 60_000 })
  return client
}

/** A tool's text content, joined. */
function text(result) {
  return (result.content ?? []).filter((c) => c.type === 'text').map((c) => c.text).join('\n')
}

async function call(client, name, args, options = { timeout: 90_000 }) {
  return client.callTool({ name, arguments: args }, undefined, options)
}

async function ok(client, name, args, options) {
  const result = await call(client, name, args, options)
  assert.notEqual(result.isError, true, `${name} failed: ${text(result)}`)
  return result
}

for (const [transportName, makeTransport] of [['stdio (paddock mcp)', stdioTransport], ['Streamable HTTP (paddockd /mcp)', httpTransport]]) {
  describe(`MCP over ${transportName}`, { skip: skip ?? false }, () => {
    let daemon
    let client
    let sandboxId

    before(async () => {
      daemon = await startDaemon()
      client = await connect(makeTransport(daemon, daemon.apiKey))
    }, { timeout: 120_000 })

    after(async () => {
      await client?.close().catch(() => {})
      await daemon?.stop()
    })

    it('lists the tools with descriptions and input schemas', T, async () => {
      const { tools } = await client.listTools()
      const names = tools.map((t) => t.name).sort()
      assert.deepEqual(names, [...TOOLS].sort())
      for (const tool of tools) {
        assert.ok(tool.description && tool.description.length > 20, `${tool.name} has no useful description`)
        assert.equal(tool.inputSchema.type, 'object')
      }
      const run = tools.find((t) => t.name === 'run_command')
      assert.deepEqual([...run.inputSchema.required].sort(), ['command', 'sandboxId'])
      assert.ok(run.inputSchema.properties.timeoutSeconds, 'run_command takes a timeout')
      assert.match(run.description, /16 KiB/)
      const create = tools.find((t) => t.name === 'create_sandbox')
      for (const p of ['template', 'timeoutSeconds', 'isolation', 'allowInternetAccess', 'allowOut', 'denyOut']) {
        assert.ok(create.inputSchema.properties[p], `create_sandbox takes ${p}`)
      }
    })

    it('creates a sandbox that outlives the call and runs python in it', CREATE, async () => {
      const created = await ok(client, 'create_sandbox', { template: 'base', timeoutSeconds: 600 }, CREATE)
      sandboxId = created.structuredContent.sandboxId
      assert.match(sandboxId, /^[a-z0-9]{20}$/)
      const listed = await ok(client, 'list_sandboxes', {})
      assert.ok(listed.structuredContent.sandboxes.some((s) => s.sandboxId === sandboxId))

      const run = await ok(client, 'run_command', { sandboxId, command: 'python3 -c "print(6*7)"' })
      assert.equal(run.structuredContent.exitCode, 0)
      assert.equal(run.structuredContent.stdout, '42\n')
      assert.match(text(run), /42/)

      // A failing command is a result with its exit code and stderr, not a tool error.
      const fails = await ok(client, 'run_command', { sandboxId, command: 'echo out; echo err >&2; exit 3' })
      assert.deepEqual([fails.structuredContent.exitCode, fails.structuredContent.stdout, fails.structuredContent.stderr], [3, 'out\n', 'err\n'])
      // sudo works for the default user on runc; on gVisor the Sentry keeps no_new_privs set, so sudo is refused there.
      const sudo = await ok(client, 'run_command', { sandboxId, command: 'whoami; sudo -n whoami' })
      assert.equal(sudo.structuredContent.stdout, process.env.PADDOCK_ISOLATION === 'gvisor' ? 'user\n' : 'user\nroot\n')
    })

    it('bounds long output and says where the whole is', T, async () => {
      const run = await ok(client, 'run_command', { sandboxId, command: 'seq 1 100000' })
      const { stdout, note } = run.structuredContent
      assert.ok(stdout.length < 17 * 1024, `stdout of ${stdout.length} chars`)
      assert.match(stdout, /^1\n2\n3\n/)
      assert.match(stdout, /99999\n100000\n$/)
      assert.match(stdout, /bytes omitted/)
      const file = /in (\S+)\.out/.exec(note)[1] + '.out'
      const whole = await ok(client, 'run_command', { sandboxId, command: `wc -l < ${file}` })
      assert.equal(whole.structuredContent.stdout, '100000\n')
    })

    it('writes, reads and lists files', T, async () => {
      const content = `hello from MCP over ${transportName}\nline 2\n`
      const written = await ok(client, 'write_file', { sandboxId, path: '/home/user/work/notes.txt', content })
      assert.equal(written.structuredContent.path, '/home/user/work/notes.txt')
      const read = await ok(client, 'read_file', { sandboxId, path: 'work/notes.txt' })
      assert.equal(text(read), content)
      const listed = await ok(client, 'list_files', { sandboxId, path: '/home/user/work' })
      assert.deepEqual(listed.structuredContent.entries.map((e) => [e.name, e.type]), [['notes.txt', 'file']])
      const missing = await call(client, 'read_file', { sandboxId, path: '/nope/missing.txt' })
      assert.equal(missing.isError, true)
      assert.match(text(missing), /missing\.txt/)
    })

    it('gives a port URL that reaches a server in the sandbox', T, async () => {
      await ok(client, 'run_command', { sandboxId, command: 'cd /home/user/work && (python3 -m http.server 8000 >/tmp/http.log 2>&1 &)' })
      const port = await ok(client, 'get_port_url', { sandboxId, port: 8000 })
      const url = new URL(port.structuredContent.url)
      assert.equal(url.protocol, 'http:')
      assert.equal(url.host, `8000-${sandboxId}.localhost:${daemon.port}`)
      // *.localhost is loopback; the request goes there with the URL's host, as a browser's would.
      const res = await waitUntil(async () => {
        const r = await getViaHost(daemon.port, url.host, '/notes.txt')
        return r.status === 200 ? r : null
      }, 30_000, 'the server in the sandbox to answer')
      assert.match(res.body, /hello from MCP/)
    })

    it('answers tool errors the model can act on: unknown sandbox, command timeout, no interpreter, bad arguments', T, async () => {
      const unknown = await call(client, 'run_command', { sandboxId: 'nosuchsandbox0000000', command: 'true' })
      assert.equal(unknown.isError, true)
      assert.match(text(unknown), /nosuchsandbox0000000.*does not exist or has ended.*create_sandbox/s)

      const slow = await call(client, 'run_command', { sandboxId, command: 'echo started; sleep 30; echo never', timeoutSeconds: 2 })
      assert.equal(slow.isError, true)
      assert.match(text(slow), /did not finish within 2 s/)
      assert.match(text(slow), /started/)
      assert.doesNotMatch(text(slow), /never/)
      // Killed with its children: no sleep is left behind.
      const left = await ok(client, 'run_command', { sandboxId, command: 'pgrep -x sleep || echo none' })
      assert.equal(left.structuredContent.stdout, 'none\n')

      const code = await call(client, 'run_code', { sandboxId, code: 'print(6*7)' })
      assert.equal(code.isError, true)
      assert.match(text(code), /no code interpreter.*49999.*run_command/s)

      const badPort = await call(client, 'get_port_url', { sandboxId, port: 70000 })
      assert.equal(badPort.isError, true)
      assert.match(text(badPort), /port must be from 1 to 65535/)
      const badIsolation = await call(client, 'create_sandbox', { isolation: 'vm' })
      assert.equal(badIsolation.isError, true)
      assert.match(text(badIsolation), /isolation must be 'runc' or 'gvisor'/)
    })

    it('runs code in a code-interpreter sandbox: state kept across calls, results, errors', CREATE, async () => {
      // The first create may build the code-interpreter template when the shared cache is cold (~15 min).
      const created = await ok(client, 'create_sandbox', { template: 'code-interpreter', timeoutSeconds: 300 }, CREATE)
      const codeSandbox = created.structuredContent.sandboxId
      try {
        const first = await ok(client, 'run_code', { sandboxId: codeSandbox, code: 'x = 6 * 7\nprint("x is", x)' })
        assert.equal(first.structuredContent.stdout, 'x is 42\n')
        assert.equal(first.structuredContent.error, null)
        // The kernel kept x: the cell's last expression is its main result.
        const second = await ok(client, 'run_code', { sandboxId: codeSandbox, code: 'x + 1' })
        assert.deepEqual(second.structuredContent.results.map((r) => [r.text, r.isMainResult]), [['43', true]])
        assert.equal(second.structuredContent.executionCount, first.structuredContent.executionCount + 1)
        // A raised exception is the run's error (a result the model reads), not a tool error.
        const raised = await ok(client, 'run_code', { sandboxId: codeSandbox, code: 'import json\njson.loads("{")' })
        assert.equal(raised.structuredContent.error.name, 'JSONDecodeError')
        assert.match(raised.structuredContent.error.traceback.replace(/\x1b\[[0-9;]*m/g, ''), /json\.loads/)
        // Rich results name their formats: a matplotlib figure comes with a png.
        const chart = await ok(client, 'run_code', { sandboxId: codeSandbox, code: 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()' })
        assert.ok(chart.structuredContent.results.some((r) => r.formats.includes('png')), JSON.stringify(chart.structuredContent.results))
      } finally {
        await ok(client, 'kill_sandbox', { sandboxId: codeSandbox })
      }
    })

    // Was todo: it failed once over one transport (the runc resume's overlay mount got ENOENT). The likely cause, reproduced
    // by hand 2026-12-07: a mount namespace made by anyone while the sandbox ran kept its disk's filesystem alive past the
    // pause's unmount, and the resume mounted a second, stale instance of the image on another loop device, without
    // the upper directory of a young sandbox. The resume now mounts the device still attached (SandboxFilesystem).
    it('pauses and resumes the sandbox (issue 18), its files kept', T, async () => {
      await ok(client, 'write_file', { sandboxId, path: '/home/user/paused.txt', content: 'kept while paused\n' })
      const paused = await ok(client, 'pause_sandbox', { sandboxId })
      assert.equal(paused.structuredContent.paused, true)
      const again = await ok(client, 'pause_sandbox', { sandboxId })
      assert.match(again.structuredContent.note, /paused already/)
      const listed = await ok(client, 'list_sandboxes', {})
      assert.equal(listed.structuredContent.sandboxes.find((s) => s.sandboxId === sandboxId).state, 'paused')
      const refused = await call(client, 'run_command', { sandboxId, command: 'true' })
      assert.equal(refused.isError, true)
      assert.match(text(refused), /paused: call resume_sandbox/)
      const resumed = await ok(client, 'resume_sandbox', { sandboxId, timeoutSeconds: 600 })
      assert.ok(Date.parse(resumed.structuredContent.endAt) > Date.now() + 500_000)
      const read = await ok(client, 'read_file', { sandboxId, path: '/home/user/paused.txt' })
      assert.match(text(read), /kept while paused/)
    })

    it('kills the sandbox', T, async () => {
      const killed = await ok(client, 'kill_sandbox', { sandboxId })
      assert.equal(killed.structuredContent.killed, true)
      const listed = await ok(client, 'list_sandboxes', {})
      assert.ok(!listed.structuredContent.sandboxes.some((s) => s.sandboxId === sandboxId))
      const again = await call(client, 'kill_sandbox', { sandboxId })
      assert.equal(again.isError, true)
      assert.match(text(again), /does not exist or has ended/)
    })

    it('refuses a bad key', T, async () => {
      if (makeTransport === httpTransport) {
        // paddockd checks the key before the endpoint: no MCP session at all.
        await assert.rejects(connect(httpTransport(daemon, 'e2b_bad0000000000000000000000000000000000')), /401|nauthorized|API key/i)
      } else {
        // The stdio server starts (it is the user's own process); every call made with the key is refused.
        const bad = await connect(stdioTransport(daemon, 'e2b_bad0000000000000000000000000000000000'))
        try {
          const listed = await call(bad, 'list_sandboxes', {})
          assert.equal(listed.isError, true)
          assert.match(text(listed), /refused the credentials/)
        } finally {
          await bad.close()
        }
      }
    })
  })
}
