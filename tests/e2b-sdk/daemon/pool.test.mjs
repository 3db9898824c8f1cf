// The official E2B SDK, unchanged, against paddockd with a warm pool of base (PADDOCK_POOL=base=2): a create that
// claims a pool sandbox must be indistinguishable to the SDK from a cold one, with the caller's envs and token.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from 'e2b'
import { startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 120_000 }
const skip = whyNotRunnable()

/** The sandbox's own log says whether its create claimed a pool sandbox. */
async function claimedFromPool(daemon, sandboxId) {
  const res = await fetch(`${daemon.url}/v2/sandboxes/${sandboxId}/logs`, { headers: { 'X-API-Key': daemon.apiKey }, signal: AbortSignal.timeout(30_000) })
  assert.equal(res.status, 200)
  return JSON.stringify(await res.json()).includes('claimed from the warm pool')
}

describe('paddockd with a warm pool, through the e2b SDK', { skip: skip ?? false }, () => {
  let daemon

  before(async () => {
    process.env.PADDOCK_POOL = 'base=2'
    daemon = await startDaemon()
  }, { timeout: 16 * 60_000 })

  after(async () => {
    await daemon?.stop()
    // Pool sandboxes are the daemon's own: its shutdown destroys them (none were listed for stop() to kill).
    assert.match(daemon?.log() ?? '', /Warm pools stopped: \d+ pool sandboxes destroyed/)
  })

  it('a pooled create runs commands with the caller\'s envs and token', T, async () => {
    // The pool fills in the background after start; until then creates start cold. Bounded retries until one claims.
    const sandbox = await waitUntil(async () => {
      const s = await Sandbox.create('base', { ...CREATE, envs: { POOLED_FOR: 'sdk-user' } })
      if (await claimedFromPool(daemon, s.sandboxId)) {
        return s
      }
      await s.kill()
      return null
    }, 60_000, 'a create that claims a pool sandbox', 500)
    try {
      assert.ok(sandbox.envdAccessToken, 'secure by default, pooled or not')
      const result = await sandbox.commands.run('echo $POOLED_FOR; whoami')
      assert.equal(result.stdout, 'sdk-user\nuser\n')
      await sandbox.files.write('/tmp/pooled.txt', 'hello')
      assert.equal(await sandbox.files.read('/tmp/pooled.txt'), 'hello')
      const listed = await Sandbox.list().nextItems()
      assert.deepEqual(listed.map((s) => s.sandboxId), [sandbox.sandboxId], 'pool sandboxes are not listed')
    } finally {
      await sandbox.kill()
    }
  })
})
