// How paddockd's control plane fails, as the official E2B SDK sees it: unknown ids, bad keys, bad requests.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AuthenticationError, NotFoundError, Sandbox, SandboxError } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const T = { timeout: 30_000 }
const skip = whyNotRunnable()
const UNKNOWN = 'doesnotexist00000000'

describe('paddockd errors through the e2b SDK', { skip: skip ?? false }, () => {
  let daemon

  before(async () => {
    daemon = await startDaemon()
  }, { timeout: 90_000 })

  after(async () => {
    await daemon?.stop()
  })

  it('writes its first API key to the state directory and accepts it', T, async () => {
    const key = daemon.generatedKey()
    assert.match(key, /^e2b_[0-9a-f]{40}$/)
    const page = await Sandbox.list({ apiKey: key }).nextItems()
    assert.ok(Array.isArray(page))
  })

  it('refuses a wrong API key with AuthenticationError', T, async () => {
    const bad = { apiKey: 'e2b_' + '0'.repeat(40) }
    await assert.rejects(Sandbox.list(bad).nextItems(), AuthenticationError)
    await assert.rejects(Sandbox.create('base', bad), AuthenticationError)
    await assert.rejects(Sandbox.kill(UNKNOWN, bad), AuthenticationError)
  })

  it('answers unknown sandbox ids with not-found errors', T, async () => {
    await assert.rejects(Sandbox.getInfo(UNKNOWN), NotFoundError)
    await assert.rejects(Sandbox.connect(UNKNOWN), NotFoundError)
    await assert.rejects(Sandbox.setTimeout(UNKNOWN, 10_000), NotFoundError)
    await assert.rejects(Sandbox.getMetrics(UNKNOWN), NotFoundError)
    assert.equal(await Sandbox.kill(UNKNOWN), false)
  })

  it('refuses an unknown template with a 400 that names it', T, async () => {
    await assert.rejects(Sandbox.create('no-such-template'), (err) => {
      assert.ok(err instanceof SandboxError, `expected SandboxError, got ${err?.constructor?.name}`)
      assert.match(err.message, /400: template 'no-such-template' not found/)
      return true
    })
  })

  it('refuses options it cannot honour instead of ignoring them', T, async () => {
    // Names can only be allowed (E2B: "Domain names are not supported for deny rules").
    await assert.rejects(Sandbox.create('base', { network: { denyOut: ['example.com'] } }), /400: network\.denyOut/)
  })

  it('lists nothing for a metadata filter that matches nothing', T, async () => {
    const page = await Sandbox.list({ query: { metadata: { nobody: 'has this' } } }).nextItems()
    assert.deepEqual(page, [])
  })
})
