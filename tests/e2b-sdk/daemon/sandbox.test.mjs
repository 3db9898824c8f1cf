// The official E2B SDK, unchanged, against the real paddockd with the runc tier: E2B_API_URL and E2B_SANDBOX_URL
// point at the daemon, which creates the sandbox and proxies envd traffic into it.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { randomUUID } from 'node:crypto'
import { Sandbox, SandboxError } from 'e2b'
import { getViaHost, startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

// The first create may build the base template (debootstrap); later ones start in well under a second.
const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 60_000 }
const skip = whyNotRunnable()

describe('paddockd with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  let sandbox

  before(async () => {
    daemon = await startDaemon()
    sandbox = await Sandbox.create('base', { ...CREATE, metadata: { suite: 'sandbox.test' } })
  }, { timeout: 16 * 60_000 })

  after(async () => {
    await sandbox?.kill().catch(() => {})
    await daemon?.stop()
  })

  it('creates a running sandbox the SDK can describe', T, async () => {
    assert.match(sandbox.sandboxId, /^[a-z0-9]{20}$/)
    assert.ok(sandbox.envdAccessToken, 'sandboxes are secure by default')
    const info = await sandbox.getInfo()
    assert.equal(info.sandboxId, sandbox.sandboxId)
    assert.equal(info.state, 'running')
    assert.equal(info.metadata.suite, 'sandbox.test')
    assert.equal(info.envdVersion, '0.6.4')
    assert.ok(info.endAt > info.startedAt)
    assert.equal(await sandbox.isRunning(), true)
  })

  it('runs commands as the default user and as root', T, async () => {
    const asUser = await sandbox.commands.run('whoami && echo "$HOME"')
    assert.equal(asUser.exitCode, 0)
    assert.equal(asUser.stdout, 'user\n/home/user\n')
    const asRoot = await sandbox.commands.run('whoami && id -u', { user: 'root' })
    assert.equal(asRoot.stdout, 'root\n0\n')
  })

  it('round-trips files through the proxy', T, async () => {
    const text = `hello from the SDK ${randomUUID()}\n`
    await sandbox.files.write('/home/user/hello.txt', text)
    assert.equal(await sandbox.files.read('/home/user/hello.txt'), text)
    const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) & 0xff)
    await sandbox.files.write('/tmp/blob.bin', bytes)
    const back = await sandbox.files.read('/tmp/blob.bin', { format: 'bytes' })
    assert.deepEqual(Buffer.from(back), Buffer.from(bytes))
    const entries = await sandbox.files.list('/home/user')
    const hello = entries.find((e) => e.name === 'hello.txt')
    assert.ok(hello, `hello.txt not listed in ${entries.map((e) => e.name)}`)
    // Written through the agent as the default user, inside the sandbox's own filesystem.
    assert.equal(hello.owner, 'user')
    assert.equal(hello.size, Buffer.byteLength(text))
  })

  it('drives a pty', T, async () => {
    let output = ''
    const pty = await sandbox.pty.create({ cols: 80, rows: 24, onData: (d) => { output += new TextDecoder().decode(d) } })
    try {
      await sandbox.pty.sendInput(pty.pid, new TextEncoder().encode('echo pty-$((6*7))\n'))
      await waitUntil(() => output.includes('pty-42'), 20_000, 'the pty to echo pty-42')
    } finally {
      await sandbox.pty.kill(pty.pid)
    }
  })

  it('reaches a server inside through getHost(port)', T, async () => {
    const server = await sandbox.commands.run('cd /tmp && python3 -m http.server 8000', { background: true })
    try {
      const host = sandbox.getHost(8000)
      assert.equal(host, `8000-${sandbox.sandboxId}.localhost:${daemon.port}`)
      const res = await waitUntil(async () => {
        const r = await getViaHost(daemon.port, host, '/').catch(() => null)
        return r?.status === 200 ? r : null
      }, 30_000, 'python3 -m http.server 8000 through the proxy', 200)
      assert.match(res.body, /Directory listing for \//)
    } finally {
      await server.kill()
    }
  })

  it('lists sandboxes filtered by metadata', T, async () => {
    const tag = randomUUID()
    const other = await Sandbox.create('base', { ...CREATE, metadata: { tag, role: 'other' } })
    try {
      const tagged = await Sandbox.list({ query: { metadata: { tag } } }).nextItems()
      assert.deepEqual(tagged.map((s) => s.sandboxId), [other.sandboxId])
      assert.equal(tagged[0].metadata.role, 'other')
      assert.equal(tagged[0].state, 'running')
      const mine = await Sandbox.list({ query: { metadata: { suite: 'sandbox.test' } } }).nextItems()
      assert.deepEqual(mine.map((s) => s.sandboxId), [sandbox.sandboxId])
    } finally {
      assert.equal(await other.kill(), true)
    }
  })

  it('reports metrics from the runtime', T, async () => {
    // The sandbox's history (a sample every 5 s) ending with the sample of now.
    const metrics = await sandbox.getMetrics()
    assert.ok(metrics.length >= 1)
    const now = metrics.at(-1)
    assert.ok(now.memUsed > 0, `memUsed ${now.memUsed}`)
    assert.ok(now.memTotal >= now.memUsed)
    assert.ok(now.cpuCount >= 1)
    assert.ok(Math.abs(now.timestamp.getTime() - Date.now()) < 60_000)
  })

  it('kills a sandbox when its timeout set by setTimeout passes', T, async () => {
    const short = await Sandbox.create('base', CREATE)
    await short.setTimeout(1_000)
    await waitUntil(async () => !(await short.isRunning()), 30_000, 'the sandbox to time out')
    await assert.rejects(Sandbox.getInfo(short.sandboxId), (err) => err.name === 'SandboxNotFoundError' || err.name === 'NotFoundError')
    assert.equal(await Sandbox.kill(short.sandboxId), false)
  })

  it('kills a sandbox on request, after which its envd is gone', T, async () => {
    const doomed = await Sandbox.create('base', CREATE)
    assert.equal(await doomed.kill(), true)
    assert.equal(await doomed.isRunning(), false)
    await assert.rejects(doomed.commands.run('true'), SandboxError)
    assert.equal(await Sandbox.kill(doomed.sandboxId), false)
  })
})
