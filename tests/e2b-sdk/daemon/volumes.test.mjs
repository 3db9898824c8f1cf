// Volumes with the official e2b SDK 2.51, unchanged: Volume.create/list/getInfo/destroy against paddockd's /volumes,
// Sandbox.create's volumeMounts, and the Volume class's file methods against paddockd's volume content API
// (E2B_VOLUME_API_URL points the SDK at the daemon, as E2B_API_URL does for the control plane). A file one sandbox
// writes is read by the next; a delete while mounted (running or paused) is refused; a paused sandbox resumes with its
// volume bound again; another team can neither mount nor read the volume;
// the size limit holds.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { randomUUID } from 'node:crypto'
import { Sandbox, Volume, VolumeError, VolumeNotFoundError, VolumePathNotFoundError } from 'e2b'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 180_000 }
const skip = whyNotRunnable()

async function admin(daemon, method, path, body) {
  const res = await fetch(`${daemon.url}${path}`, {
    method,
    headers: { 'X-API-Key': daemon.apiKey, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  })
  const text = await res.text()
  return { status: res.status, body: text ? JSON.parse(text) : null }
}

describe('volumes with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon
  let volume
  let otherKey
  const sandboxes = []

  before(async () => {
    daemon = await startDaemon()
    process.env.E2B_VOLUME_API_URL = daemon.url
    const team = await admin(daemon, 'POST', '/teams', { name: `vol-${randomUUID().slice(0, 8)}` })
    assert.equal(team.status, 201, JSON.stringify(team.body))
    const key = await admin(daemon, 'POST', `/admin/teams/${team.body.teamID}/api-keys`, { name: 'other' })
    assert.equal(key.status, 201, JSON.stringify(key.body))
    otherKey = key.body.key
  }, { timeout: 120_000 })

  after(async () => {
    for (const s of sandboxes) {
      await s.kill().catch(() => {})
    }
    await daemon?.stop()
  })

  it('creates, lists and gets a volume with its token', T, async () => {
    volume = await Volume.create('sdk-data')
    assert.equal(volume.name, 'sdk-data')
    assert.ok(volume.volumeId && volume.token)
    const listed = await Volume.list()
    assert.ok(listed.some((v) => v.volumeId === volume.volumeId && v.name === 'sdk-data'))
    const info = await Volume.getInfo(volume.volumeId)
    assert.equal(info.token, volume.token)
    await assert.rejects(Volume.getInfo('vol-doesnotexist'), VolumeNotFoundError)
    await assert.rejects(Volume.create('no/slashes'), VolumeError)
  })

  it('carries a file from one sandbox to the next, and the Volume class reads and writes it', { timeout: 16 * 60_000 }, async () => {
    const first = await Sandbox.create('base', { ...CREATE, volumeMounts: { '/mnt/data': volume } })
    sandboxes.push(first)
    await first.commands.run('echo written-by-first > /mnt/data/hello.txt')
    const mounted = await Sandbox.getInfo(first.sandboxId)
    assert.deepEqual(mounted.volumeMounts, [{ name: 'sdk-data', path: '/mnt/data' }])

    // Delete while mounted: 409, which the SDK raises as a VolumeError.
    await assert.rejects(Volume.destroy(volume.volumeId), (err) => err instanceof VolumeError && /mounted/.test(err.message))
    await first.kill()

    assert.equal(await volume.readFile('hello.txt'), 'written-by-first\n')
    const written = await volume.writeFile('/notes/from-sdk.txt', 'from the SDK\n').catch((e) => e)
    assert.ok(written instanceof VolumePathNotFoundError, 'a file in a missing directory is a path-not-found')
    await volume.makeDir('/notes')
    const stat = await volume.writeFile('/notes/from-sdk.txt', 'from the SDK\n')
    assert.equal(stat.type, 'file')
    assert.equal(stat.size, 13)

    const second = await Sandbox.create('base', { ...CREATE, volumeMounts: { '/mnt/data': 'sdk-data' } })
    sandboxes.push(second)
    const read = await second.commands.run('cat /mnt/data/hello.txt /mnt/data/notes/from-sdk.txt')
    assert.equal(read.stdout, 'written-by-first\nfrom the SDK\n')

    const entries = await volume.list('/')
    assert.deepEqual(entries.map((e) => `${e.name}:${e.type}`).sort(), ['hello.txt:file', 'notes:directory'])
    assert.equal(await volume.exists('/nope'), false)

    // The size limit (the daemon's default for a volume is 1 GiB; this one is made small through the API).
    const small = await admin(daemon, 'POST', '/volumes', { name: 'sdk-small', sizeMB: 16 })
    assert.equal(small.status, 201, JSON.stringify(small.body))
    const third = await Sandbox.create('base', { ...CREATE, volumeMounts: { '/small': 'sdk-small' } })
    sandboxes.push(third)
    const full = await third.commands.run('dd if=/dev/zero of=/small/big bs=1M count=64 2>&1; echo exit=$?')
    assert.match(full.stdout, /No space left on device/)
    assert.doesNotMatch(full.stdout, /exit=0/)
    const bigVolume = await Volume.connect(small.body.volumeID)
    await assert.rejects(bigVolume.writeFile('/more', new Uint8Array(32 * 1024 * 1024)), /full|space/)
    await third.kill()
    await second.kill()
    assert.equal(await Volume.destroy(small.body.volumeID), true)
  })

  it('keeps another team out: no mount, no info, no content with a wrong token', T, async () => {
    await assert.rejects(
      Sandbox.create('base', { ...CREATE, apiKey: otherKey, volumeMounts: { '/mnt/data': 'sdk-data' } }),
      /no volume named 'sdk-data'/)
    await assert.rejects(Volume.getInfo(volume.volumeId, { apiKey: otherKey }), VolumeNotFoundError)
    assert.equal((await Volume.list({ apiKey: otherKey })).length, 0)
    const stolen = new Volume(volume.volumeId, 'sdk-data', 'not-the-token')
    await assert.rejects(stolen.readFile('hello.txt'), /token/)
  })

  it('refuses hostile mount paths with a clear 400', T, async () => {
    for (const path of ['/proc', '/dev/x', '/.paddock', '/etc', 'relative', '/a/../etc']) {
      await assert.rejects(Sandbox.create('base', { ...CREATE, volumeMounts: { [path]: 'sdk-data' } }), /volumeMounts\[0\]\.path/)
    }
  })

  it('pauses and resumes a sandbox with a volume, which stays in use while paused', T, async () => {
    const sandbox = await Sandbox.create('base', { ...CREATE, volumeMounts: { '/mnt/data': 'sdk-data' } })
    sandboxes.push(sandbox)
    const wrote = await sandbox.commands.run('echo before-pause > /mnt/data/paused.txt', { user: 'root' }).catch((e) => e)
    assert.equal(wrote.exitCode, 0, `${wrote.stderr} ${wrote.message ?? ''}`)
    assert.equal(await sandbox.pause(), true)
    assert.equal((await sandbox.getInfo()).state, 'paused')
    // Paused is still mounted: the resume binds it again, so the delete is refused as for a running sandbox.
    await assert.rejects(Volume.destroy(volume.volumeId), (err) => err instanceof VolumeError && /mounted/.test(err.message))
    // Written from outside while the sandbox is paused: the resumed sandbox sees the volume itself, not a copy.
    await volume.writeFile('/while-paused.txt', 'from the SDK while paused\n')

    const resumed = await Sandbox.connect(sandbox.sandboxId, CREATE)
    const read = await resumed.commands.run('cat /mnt/data/paused.txt /mnt/data/while-paused.txt', { user: 'root' })
    assert.equal(read.stdout, 'before-pause\nfrom the SDK while paused\n')
    await resumed.commands.run('echo after-resume > /mnt/data/resumed.txt', { user: 'root' })
    await resumed.kill()
    assert.equal(await volume.readFile('resumed.txt'), 'after-resume\n')
  })

  it('destroys the volume once no sandbox has it mounted', T, async () => {
    assert.equal(await Volume.destroy(volume.volumeId), true)
    assert.equal(await Volume.destroy(volume.volumeId), false)
    await assert.rejects(volume.readFile('hello.txt'), /token/)
  })
})
