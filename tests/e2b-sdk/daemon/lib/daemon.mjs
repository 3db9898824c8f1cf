// Starts the real paddockd (the Release build scripts/setup makes, or $PADDOCKD_BINARY) on a free loopback port with
// a fresh state directory, and points the official E2B SDK at it the way a user would: E2B_API_URL and
// E2B_SANDBOX_URL at the daemon, E2B_API_KEY set. paddockd runs sandboxes with runc, which needs root.
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { request } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'

export const repoRoot = path.resolve(import.meta.dirname, '..', '..', '..', '..')

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 30_000
const LOG_LIMIT = 256 * 1024

/** paddockd: $PADDOCKD_BINARY, else the Release build, else the Debug build. */
export function daemonBinary() {
  if (process.env.PADDOCKD_BINARY) {
    return process.env.PADDOCKD_BINARY
  }
  for (const config of ['Release', 'Debug']) {
    const candidate = path.join(repoRoot, 'src', 'Paddock.Daemon', 'bin', config, 'net10.0', 'paddockd')
    if (existsSync(candidate)) {
      return candidate
    }
  }
  return path.join(repoRoot, 'src', 'Paddock.Daemon', 'bin', 'Release', 'net10.0', 'paddockd')
}

/** Why these tests cannot run here, or null when they can (root and runc are what the runc tier needs). */
export function whyNotRunnable() {
  if (process.getuid?.() !== 0) {
    return 'paddockd runs sandboxes with runc, which needs root'
  }
  if (spawnSync('runc', ['--version']).status !== 0) {
    return 'runc is not installed (scripts/setup installs it)'
  }
  return null
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Polls `check` until it returns a truthy value; throws after `ms`. */
export async function waitUntil(check, ms, what, intervalMs = 100) {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value) {
      return value
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    }
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

/**
 * GET http://127.0.0.1:{port}{path} with a Host header, the way a client that resolves `*.localhost` to loopback
 * (browsers, systemd-resolved) reaches `sandbox.getHost(port)`; Node's resolver does not, so the address is given.
 */
export function getViaHost(daemonPort, host, pathname = '/', headers = {}) {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: daemonPort, path: pathname, method: 'GET', headers: { host, ...headers }, timeout: 30_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
}

/**
 * Starts paddockd and waits for GET /health. Sets E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY for the SDK in this
 * process (each test file runs in a process of its own). `args`: more paddockd options; `env`: more variables;
 * `tls`: the daemon serves HTTPS with its self-signed CA (--tls-self-signed), which this process trusts for its own
 * calls by passing the CA to node:https (NODE_EXTRA_CA_CERTS is read only when a process starts); `listenHost`:
 * 'localhost' listens on 127.0.0.1 and ::1, for clients that resolve names (*.localhost may resolve to ::1 first).
 */
export async function startDaemon({ args = [], env = {}, tls = false, listenHost = '127.0.0.1', stateDir: reuseStateDir = null, apiKey: reuseApiKey = null } = {}) {
  const binary = daemonBinary()
  if (!existsSync(binary)) {
    throw new Error(`paddockd not found at ${binary}: run scripts/setup first (or set PADDOCKD_BINARY)`)
  }
  const port = await freePort()
  // `stateDir` and `apiKey` of a daemon that crash()ed: a restart over its state, as after a SIGKILL.
  const stateDir = reuseStateDir ?? mkdtempSync(path.join(tmpdir(), 'paddockd-e2b-'))
  // A key of E2B's shape, accepted besides the one the daemon generates into its state directory.
  const apiKey = reuseApiKey ?? 'e2b_' + randomBytes(20).toString('hex')
  const tlsArgs = tls ? ['--tls-self-signed'] : []
  const child = spawn(binary, ['--listen', `${listenHost}:${port}`, '--state-dir', stateDir, ...tlsArgs, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // Templates are shared across daemons (and with the .NET runtime tests' cache) so that base is built once.
    env: { ...process.env, PADDOCK_API_KEY: apiKey, PADDOCK_TEMPLATES_DIR: process.env.PADDOCK_TEMPLATES_DIR || '/var/lib/paddock-test/templates', ...env },
  })
  let log = ''
  const append = (chunk) => { log = (log + chunk.toString()).slice(-LOG_LIMIT) }
  child.stdout.on('data', append)
  child.stderr.on('data', append)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  let exit
  exited.then((e) => { exit = e })
  // If this test process ends without stop() (a hook timed out, the runner gave up), take the daemon with it: an
  // orphaned paddockd was seen here serving on for half an hour.
  const killOnExit = () => { if (!exit) child.kill('SIGKILL') }
  process.once('exit', killOnExit)

  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`
  const caPath = path.join(stateDir, 'tls', 'ca.pem')
  /** One request to the daemon with node:http(s), the CA trusted when TLS is on; resolves { status, body }. */
  const call = (method, pathname, headers = {}, timeoutMs = 30_000) => new Promise((resolve, reject) => {
    const send = tls ? httpsRequest : request
    const options = { host: '127.0.0.1', port, path: pathname, method, headers, timeout: timeoutMs, ...(tls ? { ca: readFileSync(caPath) } : {}) }
    const req = send(options, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode, body }))
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end()
  })
  try {
    await waitUntil(async () => {
      if (exit) {
        throw new Error(`paddockd exited (${JSON.stringify(exit)}) before it was ready:\n${log}`)
      }
      try {
        return (await call('GET', '/health', {}, 5_000)).status === 200
      } catch {
        return false
      }
    }, READY_TIMEOUT_MS, 'paddockd to answer /health')
  } catch (err) {
    child.kill('SIGKILL')
    rmSync(stateDir, { recursive: true, force: true })
    throw err
  }

  process.env.E2B_API_URL = url
  process.env.E2B_SANDBOX_URL = url
  process.env.E2B_API_KEY = apiKey

  return {
    url,
    port,
    apiKey,
    stateDir,
    caPath: tls ? caPath : null,
    pid: child.pid,
    log: () => log,
    /** The key paddockd generated on its first start (written to its state directory, mode 0600). */
    generatedKey: () => readFileSync(path.join(stateDir, 'api-key'), 'utf8').trim(),
    /** SIGKILLs paddockd and keeps its state directory (sandboxes outlive it), for a restart with startDaemon({ stateDir, apiKey }). */
    async crash() {
      if (!exit) {
        child.kill('SIGKILL')
        await exited
      }
      process.removeListener('exit', killOnExit)
    },
    /**
     * Kills every sandbox the daemon still runs (a test that failed halfway leaves some), stops paddockd by pid and
     * removes its state directory. Sandboxes outlive a stopped daemon, so they must go first.
     */
    async stop() {
      if (!exit) {
        const headers = { 'X-API-Key': apiKey }
        const res = await call('GET', '/v2/sandboxes?limit=100', headers)
        for (const s of res.status === 200 ? JSON.parse(res.body) : []) {
          await call('DELETE', `/sandboxes/${s.sandboxID}`, headers, 60_000)
        }
        // Volumes are loop-mounted images under the state directory: delete them through the API (which unmounts).
        const volumes = await call('GET', '/volumes', headers)
        for (const v of volumes.status === 200 ? JSON.parse(volumes.body) : []) {
          await call('DELETE', `/volumes/${v.volumeID}`, headers, 60_000)
        }
      }
      if (!exit) {
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS)
        await exited
        clearTimeout(timer)
      }
      process.removeListener('exit', killOnExit)
      // Whatever is still mounted under the state directory (another team's volume, a failed test's) is detached
      // first, deepest first: a recursive delete must never run through a mount.
      const mounted = readFileSync('/proc/self/mountinfo', 'utf8').split('\n')
        .map((line) => line.split(' ')[4]).filter((m) => m && m.startsWith(stateDir + '/'))
        .sort((a, b) => b.length - a.length)
      for (const m of mounted) {
        spawnSync('umount', ['-l', m])
      }
      rmSync(stateDir, { recursive: true, force: true })
    },
  }
}
