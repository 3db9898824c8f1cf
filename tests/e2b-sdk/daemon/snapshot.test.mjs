// Filesystem snapshots with the official E2B SDK, unchanged, against the real paddockd and runc tier:
// sandbox.createSnapshot() of a sandbox with new, changed and deleted files; Sandbox.create(snapshotId) sees exactly
// those changes while the first sandbox runs on; listSnapshots; deleteSnapshot refused (409) while a sandbox uses
// it; bad input. On the gVisor pass, a memory snapshot: the new sandbox runs the snapshot's processes.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox, SandboxError, NotFoundError } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 120_000 }
const skip = whyNotRunnable()

describe('filesystem snapshots with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  let first
  const started = []

  before(async () => {
    daemon = await startDaemon()
    first = await Sandbox.create('base', CREATE)
  }, { timeout: 16 * 60_000 })

  after(async () => {
    for (const s of [first, ...started]) {
      await s?.kill().catch(() => {})
    }
    await daemon?.stop()
  })

  it('a new sandbox from a snapshot sees exactly the changes, and the first one keeps running', T, async () => {
    await first.files.write('/home/user/new.txt', 'made before the snapshot\n')
    const prep = await first.commands.run(
      'rm /etc/issue && rm -rf /etc/default && mkdir /etc/default && echo only > /etc/default/only', { user: 'root' })
    assert.equal(prep.exitCode, 0)

    const snapshot = await first.createSnapshot()
    assert.ok(snapshot.snapshotId, 'a snapshot id')

    // The first sandbox still runs and writes; its later writes are not in the snapshot.
    assert.equal(await first.isRunning(), true)
    await first.files.write('/home/user/later.txt', 'after\n')

    const second = await Sandbox.create(snapshot.snapshotId, CREATE)
    started.push(second)
    assert.equal(await second.files.read('/home/user/new.txt'), 'made before the snapshot\n')
    const seen = await second.commands.run(
      'ls /etc/default; test -e /etc/issue && echo issue; test -e /home/user/later.txt && echo later; whoami')
    assert.equal(seen.stdout, 'only\nuser\n')
    assert.equal(await first.files.read('/home/user/later.txt'), 'after\n')

    const listed = await Sandbox.listSnapshots({ sandboxId: first.sandboxId }).nextItems()
    assert.deepEqual(listed.map((s) => s.snapshotId), [snapshot.snapshotId])
    const mine = await first.listSnapshots().nextItems()
    assert.deepEqual(mine.map((s) => s.snapshotId), [snapshot.snapshotId])

    // In use by the second sandbox: refused with a message that says why.
    await assert.rejects(Sandbox.deleteSnapshot(snapshot.snapshotId), (err) => {
      assert.ok(err instanceof SandboxError, `expected a SandboxError, got ${err}`)
      assert.match(err.message, /409|while sandboxes run from it/)
      return true
    })
    await second.kill()
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true)
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), false)
    assert.deepEqual(await Sandbox.listSnapshots().nextItems(), [])
  })

  // gVisor only (scripts/test's second pass): runc's snapshots keep files only (README, "Memory snapshots").
  const MEMORY = { ...T, skip: process.env.PADDOCK_ISOLATION === 'gvisor' ? false : 'memory snapshots need the gVisor tier' }
  it('a sandbox from a memory snapshot runs the processes the snapshot took, with their memory', MEMORY, async () => {
    const source = await Sandbox.create('base', CREATE)
    started.push(source)
    // A value drawn at the server's start and kept only in its memory.
    await source.files.write('/tmp/server.py', [
      'import http.server, secrets',
      'token = secrets.token_hex(8)',
      'class H(http.server.BaseHTTPRequestHandler):',
      '    def do_GET(self):',
      '        body = token.encode()',
      '        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)',
      '    def log_message(self, *a): pass',
      'http.server.HTTPServer(("127.0.0.1", 8000), H).serve_forever()',
      ''].join('\n'))
    await source.commands.run('python3 /tmp/server.py', { background: true })
    // Bounded: 50 tries 0.1 s apart for the server to listen.
    const ask = 'python3 -c "import urllib.request, time\nfor i in range(50):\n' +
      '    try:\n        print(urllib.request.urlopen(\'http://127.0.0.1:8000\', timeout=2).read().decode()); break\n' +
      '    except OSError: time.sleep(0.1)\n"'
    const token = (await source.commands.run(ask)).stdout
    assert.match(token, /^[0-9a-f]{16}\n$/)

    const snapshot = await source.createSnapshot()
    await source.kill()
    const restored = await Sandbox.create(snapshot.snapshotId, { ...CREATE, envs: { MEMSNAP: 'restored' } })
    started.push(restored)
    assert.notEqual(restored.sandboxId, source.sandboxId)
    assert.equal((await restored.commands.run(ask)).stdout, token)
    assert.equal((await restored.commands.run('echo $MEMSNAP')).stdout, 'restored\n')
    assert.equal(await restored.files.read('/tmp/server.py').then((t) => t.startsWith('import http.server')), true)
    await restored.kill()
    assert.equal(await Sandbox.deleteSnapshot(snapshot.snapshotId), true)
  })

  it('refuses snapshots of unknown sandboxes and creates from unknown snapshots', T, async () => {
    await assert.rejects(Sandbox.createSnapshot('nosuchsandbox00000000'), (err) => {
      assert.match(err.constructor.name, /NotFound/)
      return true
    })
    await assert.rejects(Sandbox.create('nosuchsnapshot', { requestTimeoutMs: 30_000 }), (err) => {
      assert.ok(err instanceof SandboxError || err instanceof NotFoundError, `unexpected ${err}`)
      assert.match(err.message, /nosuchsnapshot/)
      return true
    })
  })
})
