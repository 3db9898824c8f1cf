// sandbox.commands.* of the official E2B SDK against a local paddock-agent.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdirSync, realpathSync } from 'node:fs'
import path from 'node:path'
import { AuthenticationError, CommandExitError, InvalidArgumentError, NotFoundError, SandboxError, TimeoutError } from 'e2b'
import { account, alive, commandUser, startAgent, waitUntil, withTimeout } from './lib/agent.mjs'

const T = { timeout: 30_000 }
const isRoot = process.getuid?.() === 0

describe('commands', () => {
  let agent
  let sandbox

  before(async () => {
    agent = await startAgent({ user: commandUser })
    sandbox = await agent.sandbox()
  })

  after(async () => {
    await agent?.stop()
  })

  describe('run in the foreground', () => {
    it('returns stdout, stderr and exit code 0', T, async () => {
      const result = await sandbox.commands.run('echo "hello, world"; echo oops >&2')
      assert.equal(result.exitCode, 0)
      assert.equal(result.stdout, 'hello, world\n')
      assert.equal(result.stderr, 'oops\n')
      assert.equal(result.error, undefined)
    })

    it('runs the command through bash -l -c, so shell syntax works', T, async () => {
      const result = await sandbox.commands.run('for i in 1 2 3; do printf "%s," $i; done; echo "$0"')
      assert.equal(result.stdout, '1,2,3,/bin/bash\n')
    })

    it('keeps multi-byte UTF-8 intact', T, async () => {
      const text = 'zażółć gęślą jaźń — 日本語 🚀'
      const result = await sandbox.commands.run(`printf '%s' '${text}'`)
      assert.equal(result.stdout, text)
    })

    it('delivers a megabyte of output in order, through the callbacks too', T, async () => {
      const chunks = []
      const result = await sandbox.commands.run(`seq 1 150000`, { onStdout: (d) => chunks.push(d) })
      const expected = Array.from({ length: 150000 }, (_, i) => `${i + 1}\n`).join('')
      assert.equal(result.stdout.length, expected.length)
      assert.equal(result.stdout, expected)
      assert.ok(chunks.length > 1, `expected several stdout chunks, got ${chunks.length}`)
      assert.equal(chunks.join(''), expected)
    })

    it('hands stderr to onStderr', T, async () => {
      const seen = []
      const result = await sandbox.commands.run('echo to-err >&2; echo to-out', { onStderr: (d) => seen.push(d) })
      assert.equal(seen.join(''), 'to-err\n')
      assert.equal(result.stdout, 'to-out\n')
    })

    it('throws CommandExitError carrying the result on a non-zero exit', T, async () => {
      const err = await sandbox.commands.run('echo partial; echo bad >&2; exit 3').then(
        () => assert.fail('expected CommandExitError'),
        (e) => e,
      )
      assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err?.constructor?.name}: ${err?.message}`)
      assert.equal(err.exitCode, 3)
      assert.equal(err.stdout, 'partial\n')
      assert.equal(err.stderr, 'bad\n')
      assert.equal(err.result.exitCode, 3)
      // envd reports Go's exec error text ("exit status 3"); SDK users see it as the error message.
      assert.match(err.error ?? '', /3/)
    })

    it('reports a missing program as exit code 127 from bash', T, async () => {
      const err = await sandbox.commands.run('definitely-not-a-command-xyz').catch((e) => e)
      assert.ok(err instanceof CommandExitError)
      assert.equal(err.exitCode, 127)
      assert.match(err.stderr, /definitely-not-a-command-xyz/)
    })

    it('gives the command a closed stdin when stdin is not requested', T, async () => {
      // cat would wait forever on an open stdin; with /dev/null it sees EOF at once.
      const result = await sandbox.commands.run('cat; echo "rc=$?"')
      assert.equal(result.stdout, 'rc=0\n')
    })
  })

  describe('environment and working directory', () => {
    it('passes envs to the command', T, async () => {
      const result = await sandbox.commands.run('printf "%s|%s" "$FOO" "$EMPTY_OK"', {
        envs: { FOO: 'bar baz = qux', EMPTY_OK: '' },
      })
      assert.equal(result.stdout, 'bar baz = qux|')
    })

    it('does not leak one command\'s envs into the next', T, async () => {
      await sandbox.commands.run('true', { envs: { PADDOCK_LEAK_CHECK: 'yes' } })
      const result = await sandbox.commands.run('printf "%s" "${PADDOCK_LEAK_CHECK-unset}"')
      assert.equal(result.stdout, 'unset')
    })

    it('sets HOME, USER and PATH for the command', T, async () => {
      const result = await sandbox.commands.run('printf "%s\\n" "$HOME" "$USER" "$PATH"')
      const [home, user, pathVar] = result.stdout.split('\n')
      const expectedUser = (await sandbox.commands.run('id -un')).stdout.trim()
      assert.equal(user, expectedUser)
      assert.ok(home.startsWith('/'), `HOME should be absolute, got '${home}'`)
      assert.match(pathVar, /(^|:)\/usr\/bin(:|$)/)
    })

    it('runs in the directory given as cwd', T, async () => {
      const dir = path.join(agent.dir, 'cwd test')
      mkdirSync(dir)
      const result = await sandbox.commands.run('pwd', { cwd: dir })
      assert.equal(result.stdout, `${dir}\n`)
    })

    it('runs in the agent\'s default working directory when no cwd is given', T, async () => {
      const result = await sandbox.commands.run('pwd')
      assert.equal(realpathSync(result.stdout.trim()), agent.dir)
    })

    it('rejects a cwd that does not exist, naming it', T, async () => {
      const missing = path.join(agent.dir, 'no-such-dir')
      const err = await sandbox.commands.run('pwd', { cwd: missing }).catch((e) => e)
      assert.ok(err instanceof SandboxError, `expected an SDK error, got ${err}`)
      assert.ok(!(err instanceof CommandExitError), 'the command must not have run')
      assert.ok(err instanceof InvalidArgumentError || err instanceof NotFoundError, `unexpected ${err.constructor.name}: ${err.message}`)
      assert.match(err.message, /no-such-dir/)
    })
  })

  describe('users', () => {
    it('runs as the agent\'s default user, or the user named in the call', { ...T, skip: !isRoot && 'switching users needs root' }, async () => {
      const byDefault = await sandbox.commands.run('id -un')
      assert.equal(byDefault.stdout, `${commandUser}\n`)
      // Another account than the default one; not root, whose login profile this host's root makes slow.
      const other = account('daemon')
      const named = await sandbox.commands.run('id -un; id -u; printf "%s\\n" "$HOME"', { user: 'daemon', cwd: '/' })
      assert.deepEqual(named.stdout.split('\n'), ['daemon', String(other.uid), other.home, ''])
    })

    it('rejects an unknown user, naming it', T, async () => {
      const err = await sandbox.commands.run('id', { user: 'no-such-user-xyz' }).catch((e) => e)
      assert.ok(err instanceof AuthenticationError || err instanceof SandboxError, `expected an SDK error, got ${err}`)
      assert.ok(!(err instanceof CommandExitError), 'the command must not have run')
      assert.match(err.message, /no-such-user-xyz/)
    })
  })

  describe('background commands', () => {
    it('returns a handle at once and its result from wait()', T, async () => {
      // The command blocks on stdin, so it cannot have ended before the assertions on the running handle.
      const handle = await sandbox.commands.run('read line; echo "got $line"; exit 4', { background: true, stdin: true })
      assert.ok(Number.isInteger(handle.pid) && handle.pid > 0, `pid ${handle.pid}`)
      assert.equal(handle.exitCode, undefined)
      assert.ok(alive(handle.pid), 'the process should be running on the host')
      await handle.sendStdin('ping\n')
      const err = await withTimeout(handle.wait().catch((e) => e), 10_000, 'the background command to end')
      assert.ok(err instanceof CommandExitError)
      assert.equal(err.exitCode, 4)
      assert.equal(err.stdout, 'got ping\n')
      assert.equal(handle.exitCode, 4)
      assert.equal(handle.stdout, 'got ping\n')
    })

    it('resolves wait() with the result on exit code 0', T, async () => {
      const handle = await sandbox.commands.run('echo bg-done', { background: true })
      const result = await withTimeout(handle.wait(), 10_000, 'the background command to end')
      assert.equal(result.exitCode, 0)
      assert.equal(result.stdout, 'bg-done\n')
    })
  })

  describe('stdin', () => {
    it('feeds text and bytes to stdin, by handle and by pid, and closeStdin ends it', T, async () => {
      const handle = await sandbox.commands.run('cat', { background: true, stdin: true })
      await handle.sendStdin('one\n')
      await waitUntil(() => handle.stdout === 'one\n', 10_000, `cat to echo 'one' (stdout so far: ${JSON.stringify(handle.stdout)})`)
      await sandbox.commands.sendStdin(handle.pid, new TextEncoder().encode('two\n'))
      await waitUntil(() => handle.stdout === 'one\ntwo\n', 10_000, 'cat to echo the bytes sent by pid')
      await handle.closeStdin()
      const result = await withTimeout(handle.wait(), 10_000, 'cat to exit after EOF on stdin')
      assert.equal(result.exitCode, 0)
      assert.equal(result.stdout, 'one\ntwo\n')
    })

    it('passes binary stdin through unchanged', T, async () => {
      const bytes = new Uint8Array(256).map((_, i) => i)
      const handle = await sandbox.commands.run('od -An -v -tx1 | tr -d " \\n"', { background: true, stdin: true })
      await handle.sendStdin(bytes)
      await handle.closeStdin()
      const result = await withTimeout(handle.wait(), 10_000, 'od to finish')
      assert.equal(result.stdout, Buffer.from(bytes).toString('hex'))
    })

    it('refuses stdin for a command started without it', T, async () => {
      const handle = await sandbox.commands.run('sleep 30', { background: true })
      try {
        await assert.rejects(handle.sendStdin('x'), SandboxError)
      } finally {
        await handle.kill()
      }
    })

    it('refuses stdin for a pid the agent does not know', T, async () => {
      await assert.rejects(sandbox.commands.sendStdin(999_999_999, 'x'), NotFoundError)
    })
  })

  describe('timeout', () => {
    it('ends the call with TimeoutError and kills the command when timeoutMs passes', T, async () => {
      const handle = await sandbox.commands.run('sleep 60', { background: true, timeoutMs: 1_500 })
      const err = await withTimeout(handle.wait().catch((e) => e), 15_000, 'the timed-out command to end')
      assert.ok(err instanceof TimeoutError, `expected TimeoutError, got ${err?.constructor?.name}: ${err?.message}`)
      // envd runs the process under the call's deadline: it must not outlive it.
      await waitUntil(() => !alive(handle.pid), 10_000, `pid ${handle.pid} to be killed after the deadline`)
      const listed = await sandbox.commands.list()
      assert.ok(!listed.some((p) => p.pid === handle.pid), 'the killed process must leave the list')
    })

    it('does not cut short a command that ends within timeoutMs', T, async () => {
      const result = await sandbox.commands.run('echo quick', { timeoutMs: 10_000 })
      assert.equal(result.stdout, 'quick\n')
    })
  })

  describe('kill', () => {
    it('kills a running command by pid with SIGKILL', T, async () => {
      const handle = await sandbox.commands.run('sleep 60', { background: true })
      assert.equal(await sandbox.commands.kill(handle.pid), true)
      const err = await withTimeout(handle.wait().catch((e) => e), 10_000, 'the killed command to end')
      assert.ok(err instanceof CommandExitError, `expected CommandExitError, got ${err}`)
      assert.notEqual(err.exitCode, 0)
      // envd reports Go's "signal: killed" for a command ended by SIGKILL.
      assert.match(err.error ?? '', /kill|signal|9/i)
      await waitUntil(() => !alive(handle.pid), 10_000, `pid ${handle.pid} to disappear`)
      assert.equal(await sandbox.commands.kill(handle.pid), false, 'a second kill finds no process')
    })

    it('kills through the handle', T, async () => {
      const handle = await sandbox.commands.run('sleep 60', { background: true })
      assert.equal(await handle.kill(), true)
      await assert.rejects(withTimeout(handle.wait(), 10_000, 'the killed command to end'), CommandExitError)
    })

    it('answers false for a pid it does not know', T, async () => {
      assert.equal(await sandbox.commands.kill(999_999_999), false)
    })
  })

  describe('list', () => {
    it('lists running commands with their config, and forgets them once they end', T, async () => {
      const a = await sandbox.commands.run('sleep 60', { background: true, envs: { LIST_ME: '1' }, cwd: agent.dir })
      const b = await sandbox.commands.run('sleep 61', { background: true })
      try {
        const listed = await sandbox.commands.list()
        const pa = listed.find((p) => p.pid === a.pid)
        const pb = listed.find((p) => p.pid === b.pid)
        assert.ok(pa && pb, `both pids should be listed: ${JSON.stringify(listed)}`)
        assert.equal(pa.cmd, '/bin/bash')
        assert.deepEqual(pa.args, ['-l', '-c', 'sleep 60'])
        assert.equal(pa.envs.LIST_ME, '1')
        assert.equal(pa.cwd, agent.dir)
        assert.deepEqual(pb.args, ['-l', '-c', 'sleep 61'])
      } finally {
        await a.kill()
        await b.kill()
      }
      await waitUntil(
        async () => !(await sandbox.commands.list()).some((p) => p.pid === a.pid || p.pid === b.pid),
        10_000,
        'killed commands to leave the list',
      )
    })
  })

  describe('connect', () => {
    it('connects to a running command by pid and receives its later output and result', T, async () => {
      const first = await sandbox.commands.run('read line; echo "got $line"', { background: true, stdin: true })
      const second = await sandbox.commands.connect(first.pid)
      assert.equal(second.pid, first.pid)
      await second.sendStdin('hello\n')
      const [r1, r2] = await withTimeout(Promise.all([first.wait(), second.wait()]), 10_000, 'both handles to see the end')
      assert.equal(r1.stdout, 'got hello\n')
      assert.equal(r2.stdout, 'got hello\n')
      assert.equal(r2.exitCode, 0)
    })

    it('keeps a command running after the client disconnects, and reconnects to it', T, async () => {
      const handle = await sandbox.commands.run('read line; echo "after $line"', { background: true, stdin: true })
      await handle.disconnect()
      assert.ok((await sandbox.commands.list()).some((p) => p.pid === handle.pid), 'still listed after disconnect')
      const again = await sandbox.commands.connect(handle.pid, { onStdout: () => {} })
      await again.sendStdin('reconnect\n')
      const result = await withTimeout(again.wait(), 10_000, 'the reconnected command to end')
      assert.equal(result.stdout, 'after reconnect\n')
    })

    it('rejects a pid it does not know with NotFoundError', T, async () => {
      await assert.rejects(sandbox.commands.connect(999_999_999), NotFoundError)
    })
  })
})
