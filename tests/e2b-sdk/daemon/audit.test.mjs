// Paddock's audit trail (GET /sandboxes/{id}/audit) of what the official E2B SDK, unchanged, did in a sandbox:
// commands with their exit codes, a PTY session, file writes, renames and removals, in order, readable after the
// kill and not by another team.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, Sandbox } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 180_000 }
const skip = whyNotRunnable()

async function api(daemon, method, path, { key = daemon.apiKey, body } = {}) {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { 'X-API-Key': key, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(60_000),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

describe('the audit trail of e2b SDK calls', { skip: skip ?? false }, () => {
  let daemon

  before(async () => {
    delete process.env.PADDOCK_POOL
    daemon = await startDaemon()
  }, { timeout: 16 * 60_000 })

  after(async () => {
    await daemon?.stop()
  })

  it('records commands, a pty and file changes in order with exit codes, kept after the kill, for its team only', T, async () => {
    const sandbox = await Sandbox.create('base', CREATE)
    const id = sandbox.sandboxId
    assert.equal((await sandbox.commands.run('echo one', { envs: { SECRET_TOKEN: 'hunter2' } })).exitCode, 0)
    const failed = await sandbox.commands.run('exit 3').catch((e) => e)
    assert.ok(failed instanceof CommandExitError)
    assert.equal(failed.exitCode, 3)

    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: () => {} })
    await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode('exit 7\n'))
    const ptyExit = await terminal.wait().catch((e) => e)
    assert.equal(ptyExit.exitCode, 7)

    await sandbox.files.write('/tmp/audit-a.txt', 'hello')
    await sandbox.files.rename('/tmp/audit-a.txt', '/tmp/audit-b.txt')
    await sandbox.files.remove('/tmp/audit-b.txt')
    await sandbox.kill()

    const { status, body } = await api(daemon, 'GET', `/sandboxes/${id}/audit`)
    assert.equal(status, 200)
    const kinds = body.events.map((e) => e.kind)
    assert.deepEqual(kinds, ['process.start', 'process.end', 'process.start', 'process.end', 'pty.open', 'pty.close', 'file.write', 'file.move', 'file.remove'])
    assert.deepEqual(body.events.filter((e) => e.kind === 'process.end' || e.kind === 'pty.close').map((e) => e.exitCode), [0, 3, 7])
    assert.deepEqual(body.events[0].args, ['-l', '-c', 'echo one'])
    assert.deepEqual(body.events[0].envNames, ['SECRET_TOKEN'])
    assert.ok(!JSON.stringify(body).includes('hunter2'))
    assert.equal(body.events[6].path, '/tmp/audit-a.txt')
    assert.equal(body.events[7].destination, '/tmp/audit-b.txt')
    assert.equal(body.events[8].path, '/tmp/audit-b.txt')

    const team = await api(daemon, 'POST', '/teams', { body: { name: `audit-other-${Date.now()}` } })
    assert.equal(team.status, 201)
    const key = await api(daemon, 'POST', `/admin/teams/${team.body.teamID}/api-keys`, { body: { name: 'other' } })
    assert.equal(key.status, 201)
    assert.equal((await api(daemon, 'GET', `/sandboxes/${id}/audit`, { key: key.body.key })).status, 404)
  })
})
