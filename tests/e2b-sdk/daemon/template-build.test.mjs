// E2B's template build API with the official SDK, unchanged, against the real paddockd and runc tier:
// Template.build of fromBaseImage + setEnvs + runCmd (as the default user and as root) + setWorkdir + setUser,
// a sandbox from it that sees the files, envs and user; a rebuild with only the last step changed shows cache hits in
// its log; a failing RUN fails the build with its output in the log and registers nothing; unsupported steps are
// refused with a clear message.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Sandbox, Template } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 10 * 60_000 }
const skip = whyNotRunnable()

async function build(template, name) {
  const logs = []
  try {
    await Template.build(template, name, { onBuildLogs: (entry) => logs.push(entry.message) })
    return { logs }
  } catch (error) {
    return { logs, error }
  }
}

describe('template builds with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  const sandboxes = []

  before(async () => {
    daemon = await startDaemon()
    // Makes sure base is built (a fresh host builds it on first use) before the timed builds.
    sandboxes.push(await Sandbox.create('base', CREATE))
  }, { timeout: 16 * 60_000 })

  after(async () => {
    for (const s of sandboxes) {
      await s.kill().catch(() => {})
    }
    await daemon?.stop()
  })

  const steps = (last) => Template()
    .fromBaseImage()
    .setEnvs({ GREETING: 'hello from the build' })
    .runCmd('echo "$GREETING" > /home/user/built.txt && whoami > /home/user/built-by')
    .setWorkdir('/opt/app')
    .runCmd('touch /opt/app/root-made', { user: 'root' })
    .setUser('root')
    .runCmd(last)

  it('builds a template the SDK can start sandboxes from, and a rebuild reuses the unchanged layers', T, async () => {
    const first = await build(steps('echo first > /opt/app/last && pwd > /opt/app/pwd'), 'sdk-built')
    assert.equal(first.error, undefined, `build failed: ${first.error}\n${first.logs.join('\n')}`)
    assert.ok(first.logs.some((l) => /RUN echo "\$GREETING"/.test(l)), first.logs.join('\n'))

    const sandbox = await Sandbox.create('sdk-built', CREATE)
    sandboxes.push(sandbox)
    const seen = await sandbox.commands.run(
      'cat /home/user/built.txt /home/user/built-by /opt/app/last /opt/app/pwd; test -e /opt/app/root-made && echo root-made; echo "$GREETING"; whoami')
    assert.equal(seen.stdout, 'hello from the build\nuser\nfirst\n/opt/app\nroot-made\nhello from the build\nroot\n')

    const second = await build(steps('echo second > /opt/app/last'), 'sdk-built')
    assert.equal(second.error, undefined, `rebuild failed: ${second.error}\n${second.logs.join('\n')}`)
    const cached = second.logs.filter((l) => l.startsWith('CACHED '))
    assert.equal(cached.length, 3, `expected the first RUN, the WORKDIR and the second RUN cached:\n${second.logs.join('\n')}`)
    assert.ok(!second.logs.some((l) => l.startsWith('CACHED ') && l.includes('echo second')))
    const rebuilt = await Sandbox.create('sdk-built', CREATE)
    sandboxes.push(rebuilt)
    assert.equal((await rebuilt.commands.run('cat /opt/app/last /home/user/built.txt')).stdout, 'second\nhello from the build\n')
    assert.equal(await Template.exists('sdk-built'), true)
  })

  it('a failing RUN fails the build with its output in the log and registers nothing', T, async () => {
    const failed = await build(Template().fromBaseImage().runCmd('echo about to fail; echo to-stderr >&2; exit 3'), 'sdk-fails')
    assert.ok(failed.error, 'the build must fail')
    assert.match(String(failed.error.message), /exited with code 3/)
    assert.ok(failed.logs.includes('about to fail'), failed.logs.join('\n'))
    assert.ok(failed.logs.includes('to-stderr'), failed.logs.join('\n'))
    assert.equal(await Template.exists('sdk-fails'), false)
    await assert.rejects(Sandbox.create('sdk-fails', { requestTimeoutMs: 30_000 }), /sdk-fails/)
  })

  it('refuses what this host cannot build yet, with a message that says what', T, async () => {
    const unknownBase = await build(Template().fromTemplate('no-such-template').runCmd('true'), 'sdk-unknown-base')
    assert.match(String(unknownBase.error?.message), /no-such-template/)
    const image = await build(Template().fromImage('alpine:3').runCmd('true'), 'sdk-image')
    assert.match(String(image.error?.message), /alpine:3/)
    const start = await build(Template().fromBaseImage().setStartCmd('sleep infinity', 'true'), 'sdk-start')
    assert.match(String(start.error?.message), /start command/)
  })
})
