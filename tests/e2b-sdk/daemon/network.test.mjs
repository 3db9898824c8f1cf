// The SDK's network options against the real paddockd: `network.allowOut/denyOut` at create and
// `Sandbox.updateNetwork` at run time, checked with curl from inside the sandbox against an "outside" host that
// this test makes itself (a network namespace with a veth to the host and a Python HTTP server). Nothing is sent to
// any address the test did not create.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:http'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Sandbox } from 'e2b'
import { startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 90_000 }
const skip = whyNotRunnable() ?? (spawnSync('nft', ['--version']).status !== 0 ? 'nftables is not installed (scripts/setup installs it)' : null)

const netns = `paddock-e2b-out-${process.pid}`
const hostIf = `pe${process.pid}`
const prefix = `10.205.${process.pid % 250}.`
const [gateway, address, other] = [prefix + '1', prefix + '2', prefix + '3']

function ip(...args) {
  const r = spawnSync('ip', args, { encoding: 'utf8', timeout: 30_000 })
  if (r.status !== 0) {
    throw new Error(`ip ${args.join(' ')}: ${r.stderr}`)
  }
}

function removeOutside() {
  spawnSync('ip', ['link', 'del', hostIf], { timeout: 30_000 })
  spawnSync('ip', ['netns', 'del', netns], { timeout: 30_000 })
}

/** curl from inside the sandbox: the body, or BLOCKED when the connection fails within 3 s. */
async function fetchInside(sandbox, target) {
  const r = await sandbox.commands.run(`curl -sS -m 3 http://${target}:8080/ || echo BLOCKED`, { timeoutMs: 30_000 })
  return r.stdout.trim()
}

describe('sandbox network policy through the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  let sandbox
  let server
  let webRoot

  before(async () => {
    removeOutside() // what an aborted run with this pid left
    ip('netns', 'add', netns)
    ip('link', 'add', hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns)
    ip('addr', 'add', gateway + '/29', 'dev', hostIf)
    ip('link', 'set', hostIf, 'up')
    for (const a of [address, other]) {
      ip('-n', netns, 'addr', 'add', a + '/29', 'dev', 'eth0')
    }
    ip('-n', netns, 'link', 'set', 'eth0', 'up')
    ip('-n', netns, 'route', 'add', 'default', 'via', gateway)
    webRoot = mkdtempSync(path.join(tmpdir(), 'paddock-outside-'))
    writeFileSync(path.join(webRoot, 'index.html'), 'outside\n')
    // Bound to the wildcard inside the namespace: both outside addresses answer.
    server = spawn('ip', ['netns', 'exec', netns, '/usr/bin/python3', '-m', 'http.server', '8080', '--directory', webRoot], { stdio: 'ignore' })
    daemon = await startDaemon()
  }, { timeout: 16 * 60_000 })

  after(async () => {
    await sandbox?.kill().catch(() => {})
    await daemon?.stop()
    if (server?.pid) {
      try { process.kill(server.pid, 'SIGKILL') } catch { /* gone already */ }
    }
    removeOutside()
    if (webRoot) {
      rmSync(webRoot, { recursive: true, force: true })
    }
  })

  it('applies allowOut/denyOut at create and updateNetwork at run time', T, async () => {
    sandbox = await Sandbox.create('base', { ...CREATE, network: { allowOut: [address], denyOut: ['0.0.0.0/0'] } })
    await waitUntil(async () => (await fetchInside(sandbox, address)) === 'outside', 30_000, 'the outside server')
    assert.match(await fetchInside(sandbox, other), /BLOCKED/)

    await sandbox.updateNetwork({ allowInternetAccess: false })
    assert.match(await fetchInside(sandbox, address), /BLOCKED/)

    await sandbox.updateNetwork({})
    assert.equal(await fetchInside(sandbox, other), 'outside')
  })

  it('never reaches the host, not even a listener on all its addresses', T, async () => {
    sandbox ??= await Sandbox.create('base', CREATE)
    // A stand-in for the daemon's port had it listened on every address.
    const listener = createServer((req, res) => res.end('host\n'))
    await new Promise((resolve) => listener.listen(0, '0.0.0.0', resolve))
    try {
      const port = listener.address().port
      const r = await sandbox.commands.run(`curl -sS -m 3 http://${gateway}:${port}/ || echo BLOCKED`, { timeoutMs: 30_000 })
      assert.match(r.stdout, /BLOCKED/)
      // The test can fail: the host itself reaches the listener on that address.
      const body = await (await fetch(`http://${gateway}:${port}/`)).text()
      assert.equal(body, 'host\n')
    } finally {
      listener.close()
    }
  })
})
