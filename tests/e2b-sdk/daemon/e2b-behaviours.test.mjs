// E2B behaviours of issue 18, through the official SDK, unchanged, against the real paddockd: signed file URLs
// (packages/js-sdk/tests/sandbox/files/signing.test.ts of e2b-dev/E2B), sudo for the default user, metrics by time
// range, and envd RPC without the custom connection headers (rpcHeaders.test.ts).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createServer, request } from 'node:http'
import { Sandbox } from 'e2b'
import { startDaemon, waitUntil, whyNotRunnable } from './lib/daemon.mjs'

const CREATE = { requestTimeoutMs: 15 * 60_000 }
const T = { timeout: 60_000 }
const skip = whyNotRunnable()

/**
 * Sends what a browser would send for a URL the SDK made for `https://{port}-{id}.{domain}`: this daemon serves plain
 * HTTP, so the request goes to its loopback port with the URL's host in the Host header (how the proxy routes it).
 */
function fetchSdkUrl(daemonPort, url, { method = 'GET', body, headers = {} } = {}) {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: daemonPort, path: u.pathname + u.search, method, headers: { host: u.host, ...headers }, timeout: 30_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d) => { text += d })
      res.on('end', () => resolve({ status: res.statusCode, body: text }))
    })
    req.on('timeout', () => req.destroy(new Error('request timed out')))
    req.on('error', reject)
    req.end(body)
  })
}

/** A multipart body with one part named "file", as the SDK's signing tests upload (FormData). */
function multipart(content) {
  const boundary = '----paddock' + Math.random().toString(16).slice(2)
  const body = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n${content}\r\n--${boundary}--\r\n`
  return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } }
}

describe('E2B behaviours through the official SDK', { skip: skip ?? false }, () => {
  let daemon
  let sandbox

  before(async () => {
    // Samples every second, so that a range can hold some samples and leave others out within a short test.
    daemon = await startDaemon({ args: ['--metrics-interval', '1'] })
    sandbox = await Sandbox.create('base', { ...CREATE, secure: true })
  }, { timeout: 16 * 60_000 })

  after(async () => {
    await sandbox?.kill().catch(() => {})
    await daemon?.stop()
  })

  /**
   * The SDK's signed URL as a user without E2B_SANDBOX_URL gets it: envd at https://49983-{id}.{domain}, as in E2B's
   * own signing tests (a signed URL is for a browser, which sends no E2b-Sandbox-* header).
   */
  async function signed(kind, path, opts) {
    const saved = process.env.E2B_SANDBOX_URL
    delete process.env.E2B_SANDBOX_URL
    try {
      const s = await Sandbox.connect(sandbox.sandboxId, { domain: `localhost:${daemon.port}` })
      const url = kind === 'download' ? await s.downloadUrl(path, opts) : await s.uploadUrl(path, opts)
      assert.match(url, new RegExp(`^https://49983-${sandbox.sandboxId}\\.localhost:${daemon.port}/files\\?`))
      assert.match(url, /[?&]signature=v1_/)
      return url
    } finally {
      process.env.E2B_SANDBOX_URL = saved
    }
  }

  it('accepts a signed download URL with an expiration, as the default user and as root', T, async () => {
    await sandbox.files.write('hello.txt', 'hello world')
    const res = await fetchSdkUrl(daemon.port, await signed('download', 'hello.txt', { useSignatureExpiration: 10_000 }))
    assert.equal(res.status, 200, res.body)
    assert.equal(res.body, 'hello world')

    await sandbox.files.write('hello.txt', 'hello root', { user: 'root' })
    const asRoot = await fetchSdkUrl(daemon.port, await signed('download', 'hello.txt', { user: 'root', useSignatureExpiration: 10_000 }))
    assert.equal(asRoot.status, 200, asRoot.body)
    assert.equal(asRoot.body, 'hello root')

    const noExpiry = await fetchSdkUrl(daemon.port, await signed('download', '/home/user/hello.txt'))
    assert.equal(noExpiry.status, 200, noExpiry.body)
    assert.equal(noExpiry.body, 'hello world')
  })

  it('accepts a signed upload URL, as the default user and as root', T, async () => {
    const form = multipart('file content')
    const res = await fetchSdkUrl(daemon.port, await signed('upload', 'up.txt', { useSignatureExpiration: 10_000 }), { method: 'POST', ...form })
    assert.equal(res.status, 200, res.body)
    assert.deepEqual(JSON.parse(res.body), [{ name: 'up.txt', path: '/home/user/up.txt', type: 'file' }])
    assert.equal(await sandbox.files.read('/home/user/up.txt'), 'file content')

    const asRoot = await fetchSdkUrl(daemon.port, await signed('upload', 'up.txt', { user: 'root', useSignatureExpiration: 10_000 }), { method: 'POST', ...form })
    assert.equal(asRoot.status, 200, asRoot.body)
    assert.deepEqual(JSON.parse(asRoot.body), [{ name: 'up.txt', path: '/root/up.txt', type: 'file' }])
  })

  it('refuses an expired signature with envd\'s exact body, for download and upload', T, async () => {
    const down = await fetchSdkUrl(daemon.port, await signed('download', 'hello.txt', { useSignatureExpiration: -10_000 }))
    assert.equal(down.status, 401)
    assert.deepEqual(JSON.parse(down.body), { code: 401, message: 'signature is already expired' })
    const up = await fetchSdkUrl(daemon.port, await signed('upload', 'hello.txt', { useSignatureExpiration: -100_000 }), { method: 'POST', ...multipart('x') })
    assert.equal(up.status, 401)
    assert.deepEqual(JSON.parse(up.body), { code: 401, message: 'signature is already expired' })
  })

  it('refuses forged signatures: another path, another user, another operation, a moved expiration', T, async () => {
    const url = new URL(await signed('download', 'hello.txt', { useSignatureExpiration: 10_000 }))
    const variants = []
    const otherPath = new URL(url); otherPath.searchParams.set('path', '/etc/shadow'); variants.push(otherPath)
    const otherUser = new URL(url); otherUser.searchParams.set('username', 'root'); variants.push(otherUser)
    const later = new URL(url); later.searchParams.set('signature_expiration', String(Number(url.searchParams.get('signature_expiration')) + 3600)); variants.push(later)
    const garbage = new URL(url); garbage.searchParams.set('signature', 'v1_' + 'A'.repeat(43)); variants.push(garbage)
    for (const v of variants) {
      const res = await fetchSdkUrl(daemon.port, v.toString())
      assert.equal(res.status, 401, v.toString())
      assert.deepEqual(JSON.parse(res.body), { code: 401, message: 'invalid signature' }, v.toString())
    }
    // A read signature does not allow a write.
    const write = await fetchSdkUrl(daemon.port, url.toString(), { method: 'POST', ...multipart('x') })
    assert.equal(write.status, 401)
    assert.deepEqual(JSON.parse(write.body), { code: 401, message: 'invalid signature' })
    // An expired and forged one is "invalid", as envd checks the signature before the time.
    const both = new URL(await signed('download', 'hello.txt', { useSignatureExpiration: -10_000 })); both.searchParams.set('path', 'other.txt')
    assert.deepEqual(JSON.parse((await fetchSdkUrl(daemon.port, both.toString())).body), { code: 401, message: 'invalid signature' })
  })

  it('routes a signed URL made with E2B_SANDBOX_URL (no sandbox in it) by its signature, fetched as it is', T, async () => {
    // The local default: the URL is {E2B_SANDBOX_URL}/files?..., with nothing naming the sandbox but the signature.
    await sandbox.files.write('local.txt', 'signed locally')
    const url = await sandbox.downloadUrl('local.txt', { useSignatureExpiration: 10_000 })
    assert.ok(url.startsWith(`${daemon.url}/files?`), url)
    const res = await fetch(url)
    assert.equal(res.status, 200)
    assert.equal(await res.text(), 'signed locally')

    const upload = new FormData()
    upload.append('file', new Blob(['uploaded locally']), 'blob')
    const up = await fetch(await sandbox.uploadUrl('local-up.txt', { useSignatureExpiration: 10_000 }), { method: 'POST', body: upload })
    assert.equal(up.status, 200)
    assert.equal(await sandbox.files.read('local-up.txt'), 'uploaded locally')

    const expired = await fetch(await sandbox.downloadUrl('local.txt', { useSignatureExpiration: -10_000 }))
    assert.equal(expired.status, 401)
    assert.deepEqual(await expired.json(), { code: 401, message: 'signature is already expired' })
    const forged = new URL(url)
    forged.searchParams.set('path', '/etc/shadow')
    const refused = await fetch(forged)
    assert.equal(refused.status, 401)
    assert.deepEqual(await refused.json(), { code: 401, message: 'invalid signature' })
  })

  it('lets the default user sudo (no_new_privs is off), to the same confined root', T, async () => {
    const id = await sandbox.commands.run('sudo -n id -u')
    assert.equal(id.stdout, '0\n')
    const write = await sandbox.commands.run('sudo -n sh -c "echo ok > /root/by-sudo" && sudo -n cat /root/by-sudo')
    assert.equal(write.stdout, 'ok\n')
    const nnp = await sandbox.commands.run('grep NoNewPrivs /proc/self/status')
    assert.match(nnp.stdout, /NoNewPrivs:\s+0/)
    // The root sudo reaches is the sandbox's: mount is still refused.
    await assert.rejects(sandbox.commands.run('sudo -n mount -t tmpfs none /mnt'), (err) => err.exitCode !== 0)
  })

  it('returns only the metrics samples in the asked range', { timeout: 90_000 }, async () => {
    const startedAt = Math.floor(Date.now() / 1000)
    const all = await waitUntil(async () => {
      const m = await sandbox.getMetrics()
      const seconds = new Set(m.map((s) => Math.floor(s.timestamp.getTime() / 1000)))
      return seconds.size >= 4 ? m : null
    }, 60_000, 'four seconds of metrics samples', 500)
    const seconds = [...new Set(all.map((s) => Math.floor(s.timestamp.getTime() / 1000)))].sort((a, b) => a - b)
    for (const s of all) {
      assert.ok(s.cpuCount >= 1 && s.memTotal > 0, JSON.stringify(s))
    }
    // A range around the second and third seconds sampled: their samples and no others.
    const from = seconds[1]
    const to = seconds[2]
    const ranged = await sandbox.getMetrics({ start: new Date(from * 1000), end: new Date(to * 1000) })
    assert.ok(ranged.length >= 2, `expected the samples of ${from}..${to}, got ${JSON.stringify(ranged)}`)
    for (const s of ranged) {
      const t = Math.floor(s.timestamp.getTime() / 1000)
      assert.ok(t >= from && t <= to, `sample at ${t} outside ${from}..${to}`)
    }
    const expected = all.filter((s) => { const t = Math.floor(s.timestamp.getTime() / 1000); return t >= from && t <= to })
    assert.deepEqual(ranged.map((s) => s.timestamp.getTime()), expected.map((s) => s.timestamp.getTime()))
    assert.ok(ranged.length < all.length)
    // A range before the sandbox existed holds nothing.
    const before = await sandbox.getMetrics({ start: new Date((startedAt - 3600) * 1000), end: new Date((startedAt - 1800) * 1000) })
    assert.deepEqual(before, [])
  })

  it('serves envd RPC without the custom connection headers, which the SDK keeps to the API', T, async () => {
    // A recording relay in front of the daemon, as E2B_SANDBOX_URL: it sees exactly what the SDK sends to envd.
    const seen = []
    const relay = createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, headers: { ...req.headers } })
      const up = request({ host: '127.0.0.1', port: daemon.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode, r.headers)
        r.pipe(res)
      })
      up.on('error', (err) => { res.destroy(err) })
      req.pipe(up)
    })
    await new Promise((resolve) => relay.listen(0, '127.0.0.1', resolve))
    try {
      const custom = { Authorization: 'Bearer user-token', 'X-Custom': 'secret' }
      const s = await Sandbox.connect(sandbox.sandboxId, { sandboxUrl: `http://127.0.0.1:${relay.address().port}`, headers: custom })
      const run = await s.commands.run('echo rpc ok')
      assert.equal(run.stdout, 'rpc ok\n')
      await s.files.write('/tmp/rpc.txt', 'via relay')
      assert.equal(await s.files.read('/tmp/rpc.txt'), 'via relay')
      const rpc = seen.filter((r) => r.url.startsWith('/process.Process/') || r.url.startsWith('/filesystem.Filesystem/'))
      assert.ok(rpc.length >= 1, `no RPC through the relay: ${seen.map((r) => r.url)}`)
      for (const r of rpc) {
        assert.equal(r.headers.authorization, undefined, r.url)
        assert.equal(r.headers['x-custom'], undefined, r.url)
        assert.equal(r.headers['e2b-sandbox-id'], sandbox.sandboxId)
        assert.equal(r.headers['e2b-sandbox-port'], '49983')
        assert.equal(r.headers['x-access-token'], sandbox.envdAccessToken)
        assert.match(r.headers['user-agent'] ?? '', /^e2b-js-sdk\//)
      }
    } finally {
      relay.closeAllConnections()
      await new Promise((resolve) => relay.close(resolve))
    }
  })
})
