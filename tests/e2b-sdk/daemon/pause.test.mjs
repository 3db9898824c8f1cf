// Pause and resume with the official E2B SDK, unchanged, against the real paddockd (issue 15): on gVisor a pause
// keeps memory (a background `sleep 3600` and `python3 -m http.server` go on after the resume, through the proxy);
// pause() of a paused sandbox answers false; isRunning() is false while paused (envd /health through the proxy is
// 502); list and getInfo say 'paused'; connect() resumes; a paused sandbox survives a SIGKILL of the daemon and its
// restart; autoResume on an HTTP request; runc's filesystem-only pause and its 400 for memory: true.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { Sandbox } from 'e2b'
import { getViaHost, startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 180_000 }
const RUNSC = '/usr/local/lib/paddock/runsc'
const skip = whyNotRunnable() ?? (existsSync(RUNSC) ? null : `runsc is not installed at ${RUNSC} (scripts/setup runs scripts/install-runsc)`)

describe('pause and resume with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  const started = []

  before(async () => {
    daemon = await startDaemon({ args: ['--isolation', 'gvisor'] })
  }, { timeout: 16 * 60_000 })

  after(async () => {
    if (process.env.PADDOCK_TEST_DAEMON_LOG) {
      console.log(daemon?.log())
    }
    for (const s of started) {
      await Sandbox.kill(s).catch(() => {})
    }
    await daemon?.stop()
  })

  const api = async (method, pathname, body) => {
    const res = await fetch(daemon.url + pathname, {
      method,
      headers: { 'X-API-Key': daemon.apiKey, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
    const text = await res.text()
    return { status: res.status, body: text ? JSON.parse(text) : null }
  }

  const httpThroughProxy = (sandbox, port, path) => waitUntil(async () => {
    const r = await getViaHost(daemon.port, sandbox.getHost(port), path).catch(() => null)
    return r?.status === 200 ? r : null
  }, 30_000, `port ${port} through the proxy`, 200)

  // Failed in 4 of 7 runs (then 4 of 8, 5 of 6) before the agent bound its listener again after a restore (issue 15,
  // ARCHITECTURE.md); passed 17 of 17 after.
  it('keeps processes, servers and files across a pause with memory, and connect() resumes it', T, async () => {
    const sandbox = await Sandbox.create('base', CREATE)
    started.push(sandbox.sandboxId)
    const sleeper = await sandbox.commands.run('sleep 3600', { background: true })
    await sandbox.commands.run('cd /home/user && python3 -m http.server 8000', { background: true })
    await sandbox.files.write('/home/user/note.txt', 'written before the pause\n')
    // No request to the server before the pause: a TCP connection the sandbox closed within about a minute before the
    // checkpoint (its TIME_WAIT) leaves runsc 2024-07-29's restored netstack unreachable (ARCHITECTURE.md, measured).

    assert.equal(await sandbox.pause(), true)
    assert.equal(await sandbox.pause(), false, 'a paused sandbox answers 409, which the SDK reads as false')
    assert.equal(await sandbox.isRunning(), false)
    const info = await sandbox.getInfo()
    assert.equal(info.state, 'paused')
    const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems()
    assert.deepEqual(paused.map((s) => s.sandboxId), [sandbox.sandboxId])
    assert.equal(paused[0].state, 'paused')
    const running = await Sandbox.list({ query: { state: ['running'] } }).nextItems()
    assert.ok(!running.some((s) => s.sandboxId === sandbox.sandboxId))

    const resumed = await Sandbox.connect(sandbox.sandboxId, CREATE)
    assert.equal(resumed.sandboxId, sandbox.sandboxId)
    assert.equal(await resumed.isRunning(), true)
    assert.equal((await resumed.getInfo()).state, 'running')
    const processes = await resumed.commands.list()
    const line = (p) => [p.cmd, ...(p.args ?? [])].join(' ')
    assert.ok(processes.some((p) => p.pid === sleeper.pid && line(p).includes('sleep 3600')), `sleep ${sleeper.pid} in ${JSON.stringify(processes)}`)
    assert.ok(processes.some((p) => line(p).includes('http.server')), 'the http server still runs')
    const res = await httpThroughProxy(resumed, 8000, '/note.txt')
    assert.equal(res.body, 'written before the pause\n')
    assert.equal(await resumed.files.read('/home/user/note.txt'), 'written before the pause\n')
    // Connecting to a running sandbox is not a resume: 200, and still the same processes.
    const again = await api('POST', `/v2/sandboxes/${sandbox.sandboxId}/connect`, { timeout: 120 })
    assert.equal(again.status, 200)
    assert.equal(again.body.envdAccessToken, (await api('GET', `/sandboxes/${sandbox.sandboxId}`)).body.envdAccessToken)
  })

  // E2B's connect with memory: false (SDK 2.51's onResume: 'reboot'): a pause that kept memory is booted afresh on
  // its kept files; its processes are gone, its files are not, and a later pause and resume work as usual.
  it('reboots a sandbox paused with memory when connect asks onResume reboot', T, async () => {
    const sandbox = await Sandbox.create('base', CREATE)
    started.push(sandbox.sandboxId)
    await sandbox.commands.run('sleep 3600', { background: true })
    await sandbox.files.write('/home/user/kept.txt', 'kept across a reboot\n')
    const bootBefore = (await sandbox.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout.trim()
    assert.equal(await sandbox.pause(), true)

    const rebooted = await Sandbox.connect(sandbox.sandboxId, { ...CREATE, onResume: 'reboot' })
    assert.equal(rebooted.sandboxId, sandbox.sandboxId)
    assert.equal(await rebooted.files.read('/home/user/kept.txt'), 'kept across a reboot\n')
    const line = (p) => [p.cmd, ...(p.args ?? [])].join(' ')
    const processes = await rebooted.commands.list()
    assert.ok(!processes.some((p) => line(p).includes('sleep 3600')), `no process survives a reboot: ${JSON.stringify(processes)}`)
    const bootAfter = (await rebooted.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout.trim()
    assert.notEqual(bootAfter, bootBefore, 'a reboot has a new boot id')
    const journal = await api('GET', `/v2/sandboxes/${sandbox.sandboxId}/logs`)
    assert.equal(journal.status, 200)
    assert.match(JSON.stringify(journal.body), /memory image dropped as asked/)
  })

  // Failed 3 of 6 runs with the resume hang before the agent's rebind after a restore (issue 15), 2 more with the
  // restarted daemon not ready in 60 s on a loaded host; passed 11 of 11 after. PauseTests cover the restart at the
  // runtime level too.
  it('survives a SIGKILL of the daemon and its restart while paused', T, async () => {
    const sandbox = await Sandbox.create('base', CREATE)
    started.push(sandbox.sandboxId)
    await sandbox.commands.run('sleep 3600', { background: true })
    await sandbox.files.write('/home/user/kept.txt', 'kept across a daemon crash\n')
    assert.equal(await sandbox.pause(), true)

    const { stateDir, apiKey } = daemon
    await daemon.crash()
    daemon = await startDaemon({ args: ['--isolation', 'gvisor'], stateDir, apiKey })

    // Static calls: the new daemon listens on another port, which startDaemon gave the SDK's environment.
    assert.equal((await Sandbox.getInfo(sandbox.sandboxId)).state, 'paused')
    const resumed = await Sandbox.connect(sandbox.sandboxId, CREATE)
    assert.equal(await resumed.files.read('/home/user/kept.txt'), 'kept across a daemon crash\n')
    const processes = await resumed.commands.list()
    assert.ok(processes.some((p) => [p.cmd, ...(p.args ?? [])].join(' ').includes('sleep 3600')), `sleep runs on after the restart: ${JSON.stringify(processes)}`)
  })

  it('pauses at the timeout and resumes on the first HTTP request (autoResume)', T, async () => {
    // On runc (a filesystem-only pause, resumed by a fresh boot), created with E2B's lifecycle fields as the SDK sends
    // them. Not on gVisor here: its restore left the sandbox unreachable in this scenario
    // (issue 15's resume hang, ARCHITECTURE.md; not tried again since the agent binds its listener again after a restore).
    const created = await api('POST', '/v2/sandboxes', { templateID: 'base', isolation: 'runc', timeout: 8, autoPause: true, autoResume: { enabled: true } })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const id = created.body.sandboxID
    started.push(id)
    const detail = await api('GET', `/sandboxes/${id}`)
    assert.deepEqual(detail.body.lifecycle, { onTimeout: 'pause', autoResume: true })
    const sandbox = await Sandbox.connect(id, { ...CREATE, timeoutMs: 8_000 })
    await sandbox.files.write('/home/user/auto.txt', 'kept across an auto pause\n')

    await waitUntil(async () => (await api('GET', `/sandboxes/${id}`)).body.state === 'paused', 60_000, 'the timeout to pause it', 500)
    const res = await getViaHost(daemon.port, sandbox.getHost(49983), '/health')
    assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.body}`)
    assert.equal((await api('GET', `/sandboxes/${id}`)).body.state, 'running')
    assert.equal(await sandbox.files.read('/home/user/auto.txt'), 'kept across an auto pause\n')
  })

  it('refuses bad pause requests and a paused sandbox without autoResume stays paused to the proxy', T, async () => {
    const sandbox = await Sandbox.create('base', CREATE)
    started.push(sandbox.sandboxId)
    assert.equal((await sandbox.getInfo()).lifecycle.onTimeout, 'kill')
    assert.equal(await sandbox.pause(), true)
    const health = await getViaHost(daemon.port, sandbox.getHost(49983), '/health')
    assert.equal(health.status, 502)
    assert.match(health.body, /paused/)
    assert.equal((await api('POST', `/sandboxes/${sandbox.sandboxId}/resume`, {})).status, 201)
    assert.equal((await api('POST', `/sandboxes/${sandbox.sandboxId}/resume`, {})).status, 409)
    assert.equal((await api('POST', '/sandboxes/nope/pause', {})).status, 404)
    const bad = await api('POST', '/v2/sandboxes', { templateID: 'base', autoResume: { enabled: true } })
    assert.equal(bad.status, 400)
    assert.match(bad.body.message, /autoResume/)
  })

  it('pauses a runc sandbox with its filesystem only, and refuses memory naming the tier', T, async () => {
    const created = await api('POST', '/v2/sandboxes', { templateID: 'base', isolation: 'runc', timeout: 300 })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const id = created.body.sandboxID
    started.push(id)
    const sandbox = await Sandbox.connect(id, CREATE)
    await sandbox.files.write('/home/user/fs.txt', 'on disk\n')

    const refused = await api('POST', `/sandboxes/${id}/pause`, { memory: true })
    assert.equal(refused.status, 400)
    assert.match(refused.body.message, /runc/)
    assert.equal(await sandbox.isRunning(), true, 'a refused pause changes nothing')

    assert.equal(await sandbox.pause({ keepMemory: false }), true)
    assert.equal((await sandbox.getInfo()).state, 'paused')
    const resumed = await api('POST', `/v2/sandboxes/${id}/connect`, { timeout: 120 })
    assert.equal(resumed.status, 201)
    assert.equal(resumed.body.envdAccessToken, created.body.envdAccessToken)
    assert.equal(await sandbox.files.read('/home/user/fs.txt'), 'on disk\n')
  })
})
