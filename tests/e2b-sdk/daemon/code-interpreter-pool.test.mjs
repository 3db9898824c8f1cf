// A warm pool of the code-interpreter template (issue 16): a pool sandbox counts as ready only once the template's
// start command (paddock-interp serve) ran and its ready check passed, so a pooled create hands out a sandbox whose
// interpreter already answers (it measured 2.16 s to the first result when the create still had to start it).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from '@e2b/code-interpreter'
import { startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 20 * 60_000 }
const T = { timeout: 300_000 }
const skip = whyNotRunnable()

/** The sandbox's own log says whether its create claimed a pool sandbox. */
async function claimedFromPool(daemon, sandboxId) {
  const res = await fetch(`${daemon.url}/v2/sandboxes/${sandboxId}/logs`, { headers: { 'X-API-Key': daemon.apiKey }, signal: AbortSignal.timeout(30_000) })
  assert.equal(res.status, 200)
  return JSON.stringify(await res.json()).includes('claimed from the warm pool')
}

// Seconds since the interpreter's server started, by the sandbox's own clock: /proc/uptime minus the process's start
// (field 22 of /proc/PID/stat, in clock ticks since boot). Both on one clock, so the host's does not matter.
const SERVER_AGE = String.raw`python3 -c '
import os
hz = os.sysconf("SC_CLK_TCK")
up = float(open("/proc/uptime").read().split()[0])
ages = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    if any(part.endswith(b"paddock-interp") for part in cmd) and b"serve" in cmd:
        ages.append(up - int(stat.rsplit(")", 1)[1].split()[19]) / hz)
print(len(ages), max(ages))
'`

describe('a warm pool of code-interpreter', { skip: skip ?? false }, () => {
  let daemon

  before(async () => {
    daemon = await startDaemon({ env: { PADDOCK_POOL: 'code-interpreter=1' } })
  }, { timeout: 25 * 60_000 })

  after(async () => {
    await daemon?.stop()
  })

  it('hands out sandboxes whose interpreter started before the create was sent', T, async () => {
    // The pool fills in the background after start (the first member builds the template if the cache lacks it).
    // A create sent while a member is ready claims it: the daemon's gauge says when one is (bounded wait).
    const poolReady = async () => {
      const res = await fetch(`${daemon.url}/metrics`, { headers: { 'X-API-Key': daemon.apiKey }, signal: AbortSignal.timeout(30_000) })
      assert.equal(res.status, 200)
      return /^paddock_pool_ready\{[^}]*code-interpreter[^}]*\} [1-9]/m.test(await res.text())
    }
    await waitUntil(poolReady, 240_000, 'a ready member in the code-interpreter pool', 1_000)
    const sent = performance.now()
    const sandbox = await Sandbox.create('code-interpreter', CREATE)
    const answered = performance.now()
    assert.ok(await claimedFromPool(daemon, sandbox.sandboxId), 'the create claimed the ready member')
    try {
      const first = await sandbox.runCode('1 + 1')
      assert.equal(first.text, '2')
      const [servers, age] = (await sandbox.commands.run(SERVER_AGE)).stdout.trim().split(' ').map(Number)
      const sinceSent = (performance.now() - sent) / 1000
      assert.equal(servers, 1, 'one server: the create did not start a second one')
      // The server's age exceeds the time since the create was sent only if it started before: with the start
      // command run by the create, it would be younger.
      assert.ok(age > sinceSent, `the interpreter started ${age.toFixed(2)} s ago, the create was sent ${sinceSent.toFixed(2)} s ago (answered in ${((answered - sent) / 1000).toFixed(2)} s)`)
    } finally {
      await sandbox.kill()
    }
  })
})
