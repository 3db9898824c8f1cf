// paddockd over HTTPS with its self-signed CA (issue 18): the official e2b SDK, unchanged, reaches the API and the
// sandbox hosts at https://{port}-{id}.{domain} with only E2B_DOMAIN set and the CA trusted (NODE_EXTRA_CA_CERTS),
// and the names resolve to loopback by the system's resolver (nss-myhostname: *.localhost), as a browser's would.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { spawn } from 'node:child_process'
import { lookup } from 'node:dns/promises'
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { X509Certificate } from 'node:crypto'
import { startDaemon, whyNotRunnable } from './lib/daemon.mjs'

async function whyNot() {
  const base = whyNotRunnable()
  if (base) {
    return base
  }
  try {
    const addresses = await lookup('api.paddock.localhost', { all: true })
    if (!addresses.some((a) => a.address === '127.0.0.1' || a.address === '::1')) {
      return 'api.paddock.localhost does not resolve to loopback'
    }
  } catch {
    return '*.localhost does not resolve here (scripts/setup installs libnss-myhostname)'
  }
  return null
}

const skip = await whyNot()

function runClient(env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(import.meta.dirname, 'lib', 'https-client.mjs')], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => { stdout += d })
    child.stderr.on('data', (d) => { stderr += d })
    const timer = setTimeout(() => child.kill('SIGKILL'), 12 * 60_000)
    child.on('exit', (code) => {
      clearTimeout(timer)
      try {
        resolve({ code, result: JSON.parse(stdout.trim().split('\n').pop()), stderr })
      } catch {
        reject(new Error(`the client printed no result (exit ${code}):\n${stdout}\n${stderr}`))
      }
    })
  })
}

describe('paddockd over HTTPS with the e2b SDK', { skip: skip ?? false }, () => {
  let daemon

  before(async () => {
    daemon = await startDaemon({ tls: true, listenHost: 'localhost' })
  }, { timeout: 120_000 })

  after(async () => {
    await daemon?.stop()
  })

  it('made a CA and a wildcard certificate for its domain in the state directory', { timeout: 30_000 }, () => {
    const ca = new X509Certificate(readFileSync(daemon.caPath))
    assert.equal(ca.ca, true)
    const server = new X509Certificate(readFileSync(path.join(daemon.stateDir, 'tls', 'server.pem')))
    assert.ok(server.verify(ca.publicKey), 'the server certificate is signed by the CA')
    assert.match(server.subjectAltName, /DNS:\*\.paddock\.localhost/)
    assert.equal(server.checkHost('49983-abc.paddock.localhost'), '*.paddock.localhost')
    assert.match(daemon.log(), /NODE_EXTRA_CA_CERTS=/)
  })

  it('serves the SDK with only E2B_DOMAIN set: create, commands, files, and fetch of a sandbox port', { timeout: 13 * 60_000 }, async () => {
    const env = { ...process.env, NODE_EXTRA_CA_CERTS: daemon.caPath, E2B_DOMAIN: `paddock.localhost:${daemon.port}`, E2B_API_KEY: daemon.apiKey }
    delete env.E2B_API_URL
    delete env.E2B_SANDBOX_URL
    delete env.E2B_DEBUG
    const { result, stderr } = await runClient(env)
    assert.equal(result.error, undefined, `${result.error}\n${stderr}\ndaemon log:\n${daemon.log().slice(-4000)}`)
    assert.equal(result.echo, 'over tls\n')
    assert.equal(result.read, 'served through https')
    assert.equal(result.host, `8000-${result.sandboxId}.paddock.localhost:${daemon.port}`)
    assert.equal(result.fetched, 'served through https')
    assert.deepEqual(result.apiH2, { status: 200, alpn: 'h2' })
    assert.deepEqual(result.proxyH2, { status: 200, alpn: 'h2' })
  })

  it('refuses a client that does not trust the CA', { timeout: 60_000 }, async () => {
    const env = { ...process.env, E2B_DOMAIN: `paddock.localhost:${daemon.port}`, E2B_API_KEY: daemon.apiKey }
    delete env.E2B_API_URL
    delete env.E2B_SANDBOX_URL
    delete env.NODE_EXTRA_CA_CERTS
    const { result } = await runClient(env)
    assert.match(result.error ?? '', /certificate|self.signed|UNABLE_TO_VERIFY|fetch failed/i)
  })
})
