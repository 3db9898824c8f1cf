// Run by https.test.mjs in a process of its own, because NODE_EXTRA_CA_CERTS is read only when Node starts. The
// official e2b SDK, unchanged, as a user of a TLS paddockd has it: E2B_DOMAIN and E2B_API_KEY set, no E2B_API_URL and
// no E2B_SANDBOX_URL, so that the API is https://api.{domain} and envd https://49983-{id}.{domain}, both resolved by
// the system (*.localhost is loopback through nss-myhostname). Prints one JSON line of what it saw.
import { connect } from 'node:http2'
import { lookup } from 'node:dns/promises'
import { Sandbox } from 'e2b'

const domain = process.env.E2B_DOMAIN
const out = {}
let sandbox
try {
  out.resolved = (await lookup(`api.${domain.split(':')[0]}`, { all: true })).map((a) => a.address)
  sandbox = await Sandbox.create('base', { requestTimeoutMs: 10 * 60_000 })
  out.sandboxId = sandbox.sandboxId
  out.echo = (await sandbox.commands.run('echo over tls')).stdout
  await sandbox.files.write('/home/user/www/index.html', 'served through https')
  out.read = await sandbox.files.read('/home/user/www/index.html')
  await sandbox.commands.run('cd /home/user/www && python3 -m http.server 8000 >/tmp/http.log 2>&1', { background: true })
  out.host = sandbox.getHost(8000)
  const deadline = Date.now() + 30_000
  for (;;) {
    try {
      const res = await fetch('https://' + out.host + '/index.html', { signal: AbortSignal.timeout(10_000) })
      if (res.status === 200) {
        out.fetched = await res.text()
        break
      }
    } catch (err) {
      out.lastError = String(err?.cause ?? err)
    }
    if (Date.now() > deadline) {
      throw new Error('the server in the sandbox did not answer over https: ' + out.lastError)
    }
    await new Promise((r) => setTimeout(r, 250))
  }
  // ALPN: the API and a sandbox host answer HTTP/2 to a client that offers it.
  for (const [key, host, path] of [['apiH2', `api.${domain}`, '/health'], ['proxyH2', out.host, '/index.html']]) {
    out[key] = await new Promise((resolve, reject) => {
      const session = connect('https://' + host)
      session.on('error', reject)
      const req = session.request({ ':path': path })
      req.on('response', (headers) => {
        req.resume()
        req.on('end', () => { session.close(); resolve({ status: headers[':status'], alpn: session.alpnProtocol }) })
      })
      req.on('error', reject)
      req.end()
    })
  }
} catch (err) {
  out.error = String(err?.stack ?? err)
} finally {
  await sandbox?.kill().catch(() => {})
}
console.log(JSON.stringify(out))
