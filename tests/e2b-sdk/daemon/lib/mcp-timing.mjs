// Not a test: prints the median wall time of a run_command round trip through each MCP transport and of the same
// command through the e2b SDK directly, on one daemon. Usage (root, after scripts/setup):
//   cd tests/e2b-sdk && node daemon/lib/mcp-timing.mjs
import { Client } from '@modelcontextprotocol/sdk/client/index.js'
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js'
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js'
import { Sandbox } from 'e2b'
import path from 'node:path'
import { repoRoot, startDaemon } from './daemon.mjs'

const N = 20
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
async function time(f) {
  const ms = []
  for (let i = 0; i < N; i++) {
    const t = performance.now()
    await f()
    ms.push(performance.now() - t)
  }
  return median(ms).toFixed(1)
}

const daemon = await startDaemon()
try {
  const sandbox = await Sandbox.create('base', { requestTimeoutMs: 600_000 })
  const http = new Client({ name: 'timing', version: '1' })
  await http.connect(new StreamableHTTPClientTransport(new URL(`${daemon.url}/mcp`), { requestInit: { headers: { 'X-API-Key': daemon.apiKey } } }))
  const stdio = new Client({ name: 'timing', version: '1' })
  await stdio.connect(new StdioClientTransport({ command: path.join(repoRoot, 'src/Paddock.Cli/bin/Release/net10.0/paddock'), args: ['mcp'], env: { PATH: process.env.PATH, HOME: '/root', PADDOCK_URL: daemon.url, PADDOCK_API_KEY: daemon.apiKey } }))
  const args = { name: 'run_command', arguments: { sandboxId: sandbox.sandboxId, command: 'true' } }
  await http.callTool(args); await stdio.callTool(args); await sandbox.commands.run('true')
  console.log(`median of ${N}: e2b SDK commands.run ${await time(() => sandbox.commands.run('true'))} ms, ` +
    `MCP run_command over HTTP ${await time(() => http.callTool(args))} ms, over stdio ${await time(() => stdio.callTool(args))} ms`)
  await http.close(); await stdio.close()
  await sandbox.kill()
} finally {
  await daemon.stop()
}
