// sandbox.pty.* of the official E2B SDK against a local paddock-agent.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CommandExitError, NotFoundError, SandboxError } from 'e2b'
import { alive, commandUser, startAgent, waitUntil, withTimeout } from './lib/agent.mjs'

const T = { timeout: 30_000 }
const enc = (s) => new TextEncoder().encode(s)

/** Collects a terminal's output; `until` waits for a pattern to appear in what arrived after `mark()`. */
function terminalOutput() {
  const decoder = new TextDecoder()
  let text = ''
  let from = 0
  return {
    onData: (bytes) => {
      assert.ok(bytes instanceof Uint8Array, 'onData receives bytes')
      text += decoder.decode(bytes, { stream: true })
    },
    text: () => text,
    mark: () => {
      from = text.length
    },
    until: (pattern, what) =>
      waitUntil(() => pattern.exec(text.slice(from)), 10_000, `${what} in the terminal (got ${JSON.stringify(text.slice(from).slice(-500))})`),
  }
}

describe('pty', () => {
  let agent
  let sandbox

  before(async () => {
    agent = await startAgent({ user: commandUser })
    sandbox = await agent.sandbox()
  })

  after(async () => {
    await agent?.stop()
  })

  it('creates a terminal that runs commands with the given envs, and exits with the shell\'s code', T, async () => {
    const out = terminalOutput()
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: out.onData, envs: { ABC: 'from-envs' } })
    assert.ok(terminal.pid > 0)
    await sandbox.pty.sendInput(terminal.pid, enc('echo "v=$ABC"\n'))
    await out.until(/v=from-envs/, 'the echoed variable')
    await sandbox.pty.sendInput(terminal.pid, enc('exit 7\n'))
    const err = await withTimeout(terminal.wait().catch((e) => e), 10_000, 'the shell to exit')
    assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err}`)
    assert.equal(err.exitCode, 7)
    assert.equal(terminal.exitCode, 7)
  })

  it('gives the shell a real terminal on stdin with TERM set', T, async () => {
    const out = terminalOutput()
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: out.onData })
    // The marker TT2 appears only in the output: the echoed input reads TT$((1+1)).
    await sandbox.pty.sendInput(terminal.pid, enc('printf "%s:%s:%s:%s:\\n" "TT$((1+1))" "$TERM" "$(test -t 0 && echo tty)" "$(tty | cut -c1-8)"\n'))
    const m = await out.until(/TT2:([^:\r\n]*):([^:\r\n]*):([^:\r\n]*):/, 'the terminal check')
    assert.equal(m[1], 'xterm-256color')
    assert.equal(m[2], 'tty')
    assert.equal(m[3], '/dev/pts')
    await sandbox.pty.sendInput(terminal.pid, enc('exit\n'))
    const result = await withTimeout(terminal.wait(), 10_000, 'the shell to exit')
    assert.equal(result.exitCode, 0)
  })

  it('starts with the requested size and resizes', T, async () => {
    const out = terminalOutput()
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: out.onData })
    try {
      await sandbox.pty.sendInput(terminal.pid, enc('printf "S%sZ\\n" "$(stty size)"\n'))
      await out.until(/S24 80Z/, 'the initial size 24x80')
      out.mark()
      await sandbox.pty.resize(terminal.pid, { cols: 132, rows: 43 })
      await sandbox.pty.sendInput(terminal.pid, enc('printf "S%sZ\\n" "$(stty size)"\n'))
      await out.until(/S43 132Z/, 'the new size 43x132')
    } finally {
      await sandbox.pty.kill(terminal.pid)
    }
  })

  it('delivers Ctrl-C to the foreground job through the line discipline', T, async () => {
    const out = terminalOutput()
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: out.onData })
    try {
      await sandbox.pty.sendInput(terminal.pid, enc('sleep 60\n'))
      // Wait until sleep runs (its pid shows up as a child of the shell) before interrupting it.
      await waitUntil(
        async () => (await sandbox.commands.run(`pgrep -P ${terminal.pid} -x sleep || true`)).stdout.trim() !== '',
        10_000,
        'sleep to start in the terminal',
      )
      await sandbox.pty.sendInput(terminal.pid, enc('\x03'))
      await waitUntil(
        async () => (await sandbox.commands.run(`pgrep -P ${terminal.pid} -x sleep || true`)).stdout.trim() === '',
        10_000,
        'sleep to end after ^C',
      )
      // The shell is back at its prompt and reports the job as killed by SIGINT (128 + 2).
      await sandbox.pty.sendInput(terminal.pid, enc('echo "rc=$?"\n'))
      await out.until(/rc=130/, 'the exit status of the interrupted sleep')
    } finally {
      await sandbox.pty.kill(terminal.pid)
    }
  })

  it('runs in the given cwd', T, async () => {
    const out = terminalOutput()
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: out.onData, cwd: '/usr' })
    try {
      await sandbox.pty.sendInput(terminal.pid, enc('printf "P:%s:\\n" "$PWD"\n'))
      await out.until(/P:\/usr:/, 'the working directory')
    } finally {
      await sandbox.pty.kill(terminal.pid)
    }
  })

  it('kills a terminal with SIGKILL and answers false the second time', T, async () => {
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: () => {} })
    assert.ok((await sandbox.commands.list()).some((p) => p.pid === terminal.pid), 'the terminal is listed')
    assert.equal(await sandbox.pty.kill(terminal.pid), true)
    const err = await withTimeout(terminal.wait().catch((e) => e), 10_000, 'the killed terminal to end')
    assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err}`)
    assert.notEqual(err.exitCode, 0)
    await waitUntil(() => !alive(terminal.pid), 10_000, `pid ${terminal.pid} to disappear`)
    assert.equal(await sandbox.pty.kill(terminal.pid), false)
  })

  it('reconnects to a terminal after the client disconnects', T, async () => {
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: () => {} })
    try {
      await terminal.disconnect()
      const out = terminalOutput()
      const again = await sandbox.pty.connect(terminal.pid, { onData: out.onData })
      assert.equal(again.pid, terminal.pid)
      await sandbox.pty.sendInput(terminal.pid, enc('echo "re$((6*7))"\n'))
      await out.until(/re42/, 'output after reconnecting')
      await sandbox.pty.sendInput(terminal.pid, enc('exit\n'))
      assert.equal((await withTimeout(again.wait(), 10_000, 'the shell to exit')).exitCode, 0)
    } finally {
      await sandbox.pty.kill(terminal.pid)
    }
  })

  it('rejects input, resize and connect for a pid it does not know', T, async () => {
    await assert.rejects(sandbox.pty.sendInput(999_999_999, enc('x')), NotFoundError)
    await assert.rejects(sandbox.pty.resize(999_999_999, { cols: 10, rows: 10 }), NotFoundError)
    await assert.rejects(sandbox.pty.connect(999_999_999, { onData: () => {} }), NotFoundError)
  })

  it('refuses to resize a process that has no terminal', T, async () => {
    const handle = await sandbox.commands.run('sleep 60', { background: true })
    try {
      await assert.rejects(sandbox.pty.resize(handle.pid, { cols: 100, rows: 40 }), SandboxError)
    } finally {
      await handle.kill()
    }
  })
})
