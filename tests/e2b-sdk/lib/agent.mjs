// Starts the published paddock-agent binary as a local process on loopback and hands out E2B SDK sandboxes that
// talk to it. The SDK's debug mode (`debug: true`) builds a Sandbox without calling any control plane; its envd
// address is fixed to localhost:49983 (Sandbox.envdPort is a constant in e2b 2.51.0), but `sandboxUrl` replaces
// the whole envd URL, debug or not (ConnectionConfig.getSandboxUrl), so each test file runs its own agent on a free
// port and test files do not collide.
import { spawn } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, realpathSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Sandbox } from 'e2b'

export const repoRoot = path.resolve(import.meta.dirname, '..', '..', '..')

/** The agent under test: PADDOCK_AGENT_BINARY, else what scripts/publish-agent writes. */
export const agentBinary = process.env.PADDOCK_AGENT_BINARY || path.join(repoRoot, 'artifacts', 'agent', 'paddock-agent')

const READY_TIMEOUT_MS = 20_000
const STOP_TIMEOUT_MS = 10_000
const LOG_LIMIT = 64 * 1024

/** A free TCP port on 127.0.0.1 (the kernel picks it; the listener is closed before the agent binds it). */
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

/** The uid and gid of a local account, from /etc/passwd; undefined when there is none. */
export function account(name) {
  for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const [user, , uid, gid, , home] = line.split(':')
    if (user === name) {
      return { name, uid: Number(uid), gid: Number(gid), home }
    }
  }
  return undefined
}

/**
 * The account commands should run as by default: `nobody` when the tests run as root, else the tests' own account
 * (undefined). Every command the SDK starts is `bash -l -c ...`, so a login shell of root would read root's profile,
 * which on the build machines runs `pyenv init` and can wait up to 60 s on pyenv's rehash lock; nobody's home
 * (/nonexistent) has no profile. It also puts the agent's user switching on every call, as E2B's default user does.
 */
export const commandUser = process.getuid?.() === 0 && account('nobody') ? 'nobody' : undefined

/** True while a process with this pid exists on this host (the agent runs here, so its children do too). */
export function alive(pid) {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    if (err.code === 'ESRCH') {
      return false
    }
    throw err
  }
}

/** Rejects with a message naming `what` when `promise` has not settled within `ms`. */
export async function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Polls `check` (sync or async) every `intervalMs` until it returns a truthy value; throws after `ms`. */
export async function waitUntil(check, ms, what, intervalMs = 20) {
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
 * Starts paddock-agent on 127.0.0.1 and waits for `GET /health` to answer 204.
 * @param {{ port?: number, args?: string[], workdir?: boolean, user?: string }} [options]
 *   port: the port to listen on (default: a free one); args: extra agent options;
 *   workdir: create a private temporary directory and make it the agent's default working directory (default true);
 *   user: the agent's default user (--default-user); the temporary directory is given to that account.
 */
export async function startAgent(options = {}) {
  if (!existsSync(agentBinary)) {
    throw new Error(`paddock-agent binary not found at ${agentBinary}: run scripts/publish-agent first (or set PADDOCK_AGENT_BINARY)`)
  }
  const port = options.port ?? (await freePort())
  const dir = options.workdir === false ? undefined : realpathSync(mkdtempSync(path.join(tmpdir(), 'paddock-e2b-')))
  if (dir && options.user) {
    const owner = account(options.user)
    if (!owner) {
      throw new Error(`no account '${options.user}' on this host`)
    }
    chownSync(dir, owner.uid, owner.gid)
  }
  const args = [
    '--listen', '127.0.0.1',
    '--port', String(port),
    ...(dir ? ['--default-workdir', dir] : []),
    ...(options.user ? ['--default-user', options.user] : []),
    ...(options.args ?? []),
  ]
  const child = spawn(agentBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  const append = (chunk) => {
    log = (log + chunk.toString()).slice(-LOG_LIMIT)
  }
  child.stdout.on('data', append)
  child.stderr.on('data', append)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
  let exit
  exited.then((e) => {
    exit = e
  })
  const spawnError = new Promise((_, reject) => child.once('error', reject))
  // If the test process dies without running stop(), the agent must not outlive it.
  // The child and its pipes do not keep the test process alive: a test that fails before stop() must not hang the
  // run, and the exit hook then kills the agent.
  const killOnExit = () => {
    child.kill('SIGKILL')
    if (dir) {
      rmSync(dir, { recursive: true, force: true })
    }
  }
  process.once('exit', killOnExit)
  child.unref()
  child.stdout.unref()
  child.stderr.unref()
  exited.then(() => process.removeListener('exit', killOnExit))

  const url = `http://127.0.0.1:${port}`
  const agent = {
    port,
    url,
    pid: child.pid,
    /** The agent's default working directory (a fresh temporary directory), or undefined. */
    dir,
    /** The agent's default user, or undefined for the agent's own account. */
    user: options.user,
    /** Everything the agent wrote to stdout/stderr (the last 64 KiB). */
    log: () => log,
    /** The exit status once the agent has exited, else undefined. */
    exit: () => exit,
    /** Resolves with { code, signal } when the agent exits. */
    exited,
    /** An E2B SDK sandbox bound to this agent, in debug mode (no control plane). */
    sandbox: (opts = {}) => Sandbox.create({ debug: true, sandboxUrl: url, requestTimeoutMs: 15_000, ...opts }),
    stop: () => stopAgent(agent, child),
  }

  try {
    await withTimeout(
      Promise.race([spawnError, waitForHealth(url, () => exit)]),
      READY_TIMEOUT_MS,
      `paddock-agent on ${url} to answer /health`,
    )
  } catch (err) {
    await stopAgent(agent, child)
    throw new Error(`${err.message}\nagent output:\n${log}`)
  }
  return agent
}

async function waitForHealth(url, exitStatus) {
  for (;;) {
    const exit = exitStatus()
    if (exit) {
      throw new Error(`paddock-agent exited (code ${exit.code}, signal ${exit.signal}) before it was ready`)
    }
    try {
      const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })
      await res.body?.cancel()
      if (res.status === 204) {
        return
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 20))
  }
}

/**
 * Kills what the agent still runs (so no test leaves processes behind), then stops the agent by pid: SIGTERM, then
 * SIGKILL if it has not exited within 10 s. Removes the temporary working directory.
 */
async function stopAgent(agent, child) {
  try {
    if (!agent.exit()) {
      try {
        const sandbox = await agent.sandbox({ requestTimeoutMs: 5_000 })
        const running = await sandbox.commands.list({ requestTimeoutMs: 5_000 })
        await Promise.all(running.map((p) => sandbox.commands.kill(p.pid, { requestTimeoutMs: 5_000 }).catch(() => false)))
      } catch {
        // the agent may not serve process.Process yet, or be broken: it is stopped below either way
      }
      child.kill('SIGTERM')
      const stopped = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r(undefined), STOP_TIMEOUT_MS))])
      if (!stopped) {
        child.kill('SIGKILL')
        await withTimeout(agent.exited, STOP_TIMEOUT_MS, `paddock-agent pid ${child.pid} to die after SIGKILL`)
      }
    }
  } finally {
    if (agent.dir) {
      rmSync(agent.dir, { recursive: true, force: true })
    }
  }
  return agent.exit()
}
