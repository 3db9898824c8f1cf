// Filesystem snapshots with the official E2B SDK, unchanged, against the real paddockd and runc tier:
// sandbox.createSnapshot() of a sandbox with new, changed and deleted files; Sandbox.create(snapshotId) sees exactly
// those changes while the first sandbox runs on; listSnapshots; deleteSnapshot refused (409) while a sandbox uses
// it; bad input.
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
