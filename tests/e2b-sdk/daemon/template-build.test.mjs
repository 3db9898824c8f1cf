// E2B's template build API with the official SDK, unchanged, against the real paddockd and runc tier:
// Template.build of fromBaseImage + setEnvs + runCmd (as the default user and as root) + setWorkdir + setUser,
// a sandbox from it that sees the files, envs and user; aptInstall (from a repository the build makes, so nothing
// leaves the host); a rebuild with only the last step changed shows cache hits in
// its log; a failing RUN fails the build with its output in the log and registers nothing; unsupported steps are
// refused with a clear message.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Sandbox, Template, waitForFile } from 'e2b'
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

  it('copies files from the build context, and refuses escaping or oversized sources', T, async () => {
    const context = mkdtempSync(path.join(tmpdir(), 'paddock-copy-'))
    try {
      mkdirSync(path.join(context, 'data', 'nested'), { recursive: true })
      writeFileSync(path.join(context, 'data', 'a.txt'), 'a\n')
      writeFileSync(path.join(context, 'data', 'nested', 'b.txt'), 'b\n')
      writeFileSync(path.join(context, 'single.txt'), 'single\n')
      const template = Template({ fileContextPath: context })
        .fromBaseImage()
        .copy('data', '/opt/data')
        .copy('single.txt', '/home/user/', { mode: 0o600 })
      const built = await build(template, 'sdk-copy')
      assert.equal(built.error, undefined, `build failed: ${built.error}\n${built.logs.join('\n')}`)
      const sandbox = await Sandbox.create('sdk-copy', CREATE)
      sandboxes.push(sandbox)
      const seen = await sandbox.commands.run(
        'cat /opt/data/a.txt /opt/data/nested/b.txt /home/user/single.txt; stat -c "%U %a" /home/user/single.txt; ls -A /tmp | grep -c "^.paddock-agent-"; ls -A /tmp | grep -v "^.paddock-agent-" || true')
      // No archive or scratch directory left in the layer, and only this sandbox's own agent socket in /tmp.
      assert.equal(seen.stdout, 'a\nb\nsingle\nuser 600\n1\n')

      // A rebuild finds the sources uploaded already and the layers cached.
      const again = await build(template, 'sdk-copy')
      assert.equal(again.error, undefined, String(again.error))
      assert.equal(again.logs.filter((l) => l.startsWith('CACHED ')).length, 2, again.logs.join('\n'))
    } finally {
      rmSync(context, { recursive: true, force: true })
    }

    // What the SDK would never send, sent by hand: the server checks too.
    const headers = { 'X-API-Key': daemon.apiKey, 'Content-Type': 'application/json' }
    const requested = await (await fetch(`${daemon.url}/v3/templates`, { method: 'POST', headers, body: JSON.stringify({ name: 'sdk-escape' }) })).json()
    const hash = 'ab'.repeat(32)
    const escaping = await fetch(`${daemon.url}/v2/templates/${requested.templateID}/builds/${requested.buildID}`, {
      method: 'POST', headers, body: JSON.stringify({ fromImage: 'e2bdev/base', steps: [{ type: 'COPY', args: ['../etc', '/x'], filesHash: hash }] }),
    })
    assert.equal(escaping.status, 400)
    assert.match((await escaping.json()).message, /relative path inside the build context/)
    const notUploaded = await fetch(`${daemon.url}/v2/templates/${requested.templateID}/builds/${requested.buildID}`, {
      method: 'POST', headers, body: JSON.stringify({ fromImage: 'e2bdev/base', steps: [{ type: 'COPY', args: ['data', '/x'], filesHash: hash }] }),
    })
    assert.equal(notUploaded.status, 400)
    assert.match((await notUploaded.json()).message, /were not uploaded/)
    const status = await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: daemon.port, method: 'PUT', path: `/templates/${requested.templateID}/files/${hash}`,
        headers: { 'X-API-Key': daemon.apiKey, 'Content-Length': String(2 ** 31) }, timeout: 30_000 }, (res) => {
        res.resume()
        resolve(res.statusCode)
        req.destroy()
      })
      req.on('error', reject)
      req.write('partial')
    })
    assert.equal(status, 413)
  })

  it('aptInstall installs a Debian package, here from a local repository the build itself makes', T, async () => {
    // The SDK's aptInstall is `apt-get update && apt-get install -y …` as root. Tests send no traffic off this host,
    // so an earlier step builds a one-package repository in the build sandbox (dpkg-deb, a Packages index, a Release
    // file) and points APT at it alone; apt-get then reads file: URIs and nothing else.
    const repo = [
      'set -e',
      'mkdir -p /tmp/pkg/DEBIAN /tmp/pkg/usr/bin /opt/local-repo',
      "printf 'Package: paddock-hello\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: Paddock tests <tests@paddock.invalid>\\nDescription: installed by the template-build test\\n' > /tmp/pkg/DEBIAN/control",
      "printf '#!/bin/sh\\necho hello from a local package\\n' > /tmp/pkg/usr/bin/paddock-hello",
      'chmod 755 /tmp/pkg/usr/bin/paddock-hello',
      'dpkg-deb --build --root-owner-group /tmp/pkg /opt/local-repo/paddock-hello_1.0_all.deb > /dev/null',
      'rm -rf /tmp/pkg',
      'cd /opt/local-repo',
      'deb=paddock-hello_1.0_all.deb',
      '{ dpkg-deb -f $deb; echo "Filename: ./$deb"; echo "Size: $(stat -c %s $deb)"; echo "SHA256: $(sha256sum $deb | cut -d" " -f1)"; echo; } > Packages',
      '{ echo "Date: $(date -Ru)"; echo "SHA256:"; echo " $(sha256sum Packages | cut -d" " -f1) $(stat -c %s Packages) Packages"; } > Release',
      'rm -f /etc/apt/sources.list.d/*',
      "echo 'deb [trusted=yes] file:/opt/local-repo ./' > /etc/apt/sources.list",
    ].join('\n')
    const built = await build(Template().fromBaseImage().runCmd(repo, { user: 'root' }).aptInstall(['paddock-hello']), 'sdk-apt')
    assert.equal(built.error, undefined, `build failed: ${built.error}\n${built.logs.join('\n')}`)
    assert.ok(built.logs.some((l) => /apt-get install -y .*paddock-hello/.test(l)), built.logs.join('\n'))
    const sandbox = await Sandbox.create('sdk-apt', CREATE)
    sandboxes.push(sandbox)
    const seen = await sandbox.commands.run("paddock-hello; dpkg-query -W -f '${Status} ${Version}\\n' paddock-hello")
    assert.equal(seen.stdout, 'hello from a local package\ninstall ok installed 1.0\n')
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
  })

  it('a sandbox of a template with a start command starts with it running and ready', T, async () => {
    const template = Template()
      .fromBaseImage()
      .setEnvs({ MARK: 'from-start' })
      .setStartCmd('sleep 1; echo "$MARK $(whoami)" > /tmp/ready-mark; exec sleep 600', waitForFile('/tmp/ready-mark'))
    const built = await build(template, 'sdk-start')
    assert.equal(built.error, undefined, `build failed: ${built.error}\n${built.logs.join('\n')}`)
    const sandbox = await Sandbox.create('sdk-start', CREATE)
    sandboxes.push(sandbox)
    // Ready before the create returned: the mark is there at once, and the start command still runs.
    const seen = await sandbox.commands.run('cat /tmp/ready-mark; pgrep -fx "sleep 600" > /dev/null && echo running')
    assert.equal(seen.stdout, 'from-start user\nrunning\n')
  })
})
