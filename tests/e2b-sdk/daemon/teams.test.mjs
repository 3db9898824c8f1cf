// Teams with the official e2b SDK, unchanged: two API keys of two teams against one paddockd. Each key sees, connects
// to and kills only its own team's sandboxes; a team's limit answers the SDK's RateLimitError; a revoked key is
// refused at once. Teams and keys are made over plain HTTP with the daemon's admin key (the SDK has no team API).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { randomUUID } from 'node:crypto'
import { AuthenticationError, NotFoundError, RateLimitError, Sandbox } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 120_000 }
const skip = whyNotRunnable()

async function admin(daemon, method, path, body) {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { 'X-API-Key': daemon.apiKey, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

describe('teams with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  let teamKey
  let teamKeyId
  let teamId
  let spareKey
  let theirs
  let mine

  before(async () => {
    daemon = await startDaemon()
    const team = await admin(daemon, 'POST', '/teams', { name: `sdk-${randomUUID().slice(0, 8)}`, maxSandboxes: 1 })
    assert.equal(team.status, 201, JSON.stringify(team.body))
    const key = await admin(daemon, 'POST', `/admin/teams/${team.body.teamID}/api-keys`, { name: 'sdk' })
    assert.equal(key.status, 201, JSON.stringify(key.body))
    teamId = team.body.teamID
    teamKey = key.body.key
    teamKeyId = key.body.id
    // One sandbox per team: the daemon's key (the default team) and the new team's key.
    theirs = await Sandbox.create('base', { ...CREATE, metadata: { suite: 'teams.test' } })
    mine = await Sandbox.create('base', { ...CREATE, apiKey: teamKey, metadata: { suite: 'teams.test' } })
  }, { timeout: 16 * 60_000 })

  after(async () => {
    // The daemon's own cleanup sees only the default team's sandboxes: this team's goes here, with whichever key still works.
    for (const apiKey of [teamKey, spareKey]) {
      if (mine && apiKey && await Sandbox.kill(mine.sandboxId, { apiKey }).catch(() => false)) {
        break
      }
    }
    await theirs?.kill().catch(() => {})
    await daemon?.stop()
  })

  it('lists only the key\'s own team\'s sandboxes', T, async () => {
    const listed = await Sandbox.list({ apiKey: teamKey }).nextItems()
    assert.deepEqual(listed.map((s) => s.sandboxId), [mine.sandboxId])
    const other = await Sandbox.list().nextItems()
    assert.deepEqual(other.map((s) => s.sandboxId), [theirs.sandboxId])
  })

  it('cannot connect to, inspect or kill another team\'s sandbox', T, async () => {
    await assert.rejects(Sandbox.connect(theirs.sandboxId, { apiKey: teamKey }), NotFoundError)
    await assert.rejects(Sandbox.getInfo(theirs.sandboxId, { apiKey: teamKey }), NotFoundError)
    assert.equal(await Sandbox.kill(theirs.sandboxId, { apiKey: teamKey }), false)
    assert.equal(await theirs.isRunning(), true)
    const again = await Sandbox.connect(mine.sandboxId, { apiKey: teamKey })
    assert.equal((await again.commands.run('echo own')).stdout, 'own\n')
  })

  it('answers RateLimitError past the team\'s limit, and a kill frees the slot', T, async () => {
    await assert.rejects(Sandbox.create('base', { ...CREATE, apiKey: teamKey }), (err) => {
      assert.ok(err instanceof RateLimitError, `${err}`)
      assert.match(err.message, /maxSandboxes/)
      return true
    })
    assert.equal(await mine.kill(), true)
    mine = await Sandbox.create('base', { ...CREATE, apiKey: teamKey })
    assert.equal((await mine.commands.run('echo again')).stdout, 'again\n')
  })

  it('refuses a revoked key on the next call', T, async () => {
    // A second key first: the team's sandbox must still be reachable to clean it up.
    const spare = await admin(daemon, 'POST', `/admin/teams/${teamId}/api-keys`, { name: 'spare' })
    assert.equal(spare.status, 201, JSON.stringify(spare.body))
    spareKey = spare.body.key
    const del = await fetch(`${daemon.url}/api-keys/${teamKeyId}`, { method: 'DELETE', headers: { 'X-API-Key': teamKey }, signal: AbortSignal.timeout(30_000) })
    assert.equal(del.status, 204)
    await assert.rejects(Sandbox.list({ apiKey: teamKey }).nextItems(), AuthenticationError)
    await assert.rejects(Sandbox.kill(mine.sandboxId, { apiKey: teamKey }), AuthenticationError)
    assert.equal(await Sandbox.kill(mine.sandboxId, { apiKey: spare.body.key }), true)
    mine = null
  })
})
