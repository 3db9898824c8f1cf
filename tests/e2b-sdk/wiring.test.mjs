// How the SDK finds and authenticates to the agent: debug mode's default address, Sandbox.connect, the access token,
// and the agent's own start and stop.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createServer } from 'node:net'
import { AuthenticationError, Sandbox } from 'e2b'
import { commandUser, startAgent } from './lib/agent.mjs'

const T = { timeout: 30_000 }

/** Whether 127.0.0.1:port can be bound now (E2B's fixed debug port may be taken by another agent on this host). */
function portIsFree(port) {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

describe('debug mode with no address given', () => {
  let agent
  let skip = false

  before(async () => {
    // The SDK's debug mode talks to localhost:49983 (its fixed envd port); the agent listens there by default.
    if (!(await portIsFree(49983))) {
      skip = true
      return
    }
    agent = await startAgent({ port: 49983, user: commandUser })
  })

  after(async () => {
    await agent?.stop()
  })

  it('reaches the agent on localhost:49983 with only E2B_DEBUG=true set', T, async (t) => {
    if (skip) {
      t.skip('port 49983 is in use on this host')
      return
    }
    const saved = { debug: process.env.E2B_DEBUG, url: process.env.E2B_SANDBOX_URL }
    process.env.E2B_DEBUG = 'true'
    delete process.env.E2B_SANDBOX_URL
    try {
      const sandbox = await Sandbox.create({ requestTimeoutMs: 10_000 })
      assert.equal(sandbox.sandboxId, 'debug_sandbox_id')
      const result = await sandbox.commands.run('echo "$((40 + 2))"')
      assert.equal(result.stdout, '42\n')
      assert.equal(await sandbox.files.exists(agent.dir), true)
    } finally {
      if (saved.debug === undefined) delete process.env.E2B_DEBUG
      else process.env.E2B_DEBUG = saved.debug
      if (saved.url !== undefined) process.env.E2B_SANDBOX_URL = saved.url
    }
  })
})

describe('Sandbox.connect and the access token', () => {
  let agent
  const token = 'paddock-test-token-' + Math.random().toString(36).slice(2)

  before(async () => {
    agent = await startAgent({ args: ['--access-token', token], user: commandUser })
  })

  after(async () => {
    await agent?.stop()
  })

  // Sandbox.create/connect in debug mode never ask a control plane, so they carry no envd access token; the control
  // plane would hand it over as envdAccessToken, which the constructor takes (the route Sandbox.connect uses).
  const withToken = (envdAccessToken) =>
    new Sandbox({ sandboxId: 'token-test', envdVersion: '0.6.4', envdAccessToken, debug: true, sandboxUrl: agent.url, requestTimeoutMs: 10_000 })

  it('serves commands and files to a client that sends the token', T, async () => {
    const sandbox = withToken(token)
    assert.equal((await sandbox.commands.run('echo ok')).stdout, 'ok\n')
    await sandbox.files.write(`${agent.dir}/token.txt`, 'secret stuff')
    assert.equal(await sandbox.files.read(`${agent.dir}/token.txt`), 'secret stuff')
    assert.equal((await sandbox.files.list(agent.dir)).length, 1)
  })

  it('refuses Connect and /files calls without the token, or with a wrong one', T, async () => {
    for (const sandbox of [await Sandbox.connect('no-token', { debug: true, sandboxUrl: agent.url }), withToken('wrong')]) {
      await assert.rejects(sandbox.commands.run('echo should-not-run'), AuthenticationError)
      await assert.rejects(sandbox.files.list(agent.dir), AuthenticationError)
      await assert.rejects(sandbox.files.read(`${agent.dir}/token.txt`), AuthenticationError)
      await assert.rejects(sandbox.files.write(`${agent.dir}/denied.txt`, 'x'), AuthenticationError)
    }
  })

  it('answers /health without the token', T, async () => {
    const res = await fetch(`${agent.url}/health`, { signal: AbortSignal.timeout(5_000) })
    assert.equal(res.status, 204)
  })
})

describe('agent lifecycle', () => {
  it('exits with code 0 on SIGTERM', T, async () => {
    const agent = await startAgent({ user: commandUser })
    let exit
    try {
      const sandbox = await Sandbox.connect('lifecycle', { debug: true, sandboxUrl: agent.url, requestTimeoutMs: 10_000 })
      assert.equal((await sandbox.commands.run('echo alive')).stdout, 'alive\n')
    } finally {
      exit = await agent.stop()
    }
    assert.deepEqual(exit, { code: 0, signal: null })
  })
})
