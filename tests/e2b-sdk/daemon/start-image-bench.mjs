// Start images (issue 15, point 5), measured with the unchanged SDKs on the gVisor tier: create to first output of a
// template whose start command starts a listener, and create to the first runCode result of code-interpreter, each
// on a paddockd with --start-images off (every create runs the start command) and then on (creates after the first
// restore the template's start image). Not a test (node --test does not pick it up); run it by hand:
//   cd tests/e2b-sdk && node daemon/start-image-bench.mjs [runs]
// Prints one line per create and the medians. Needs root, runsc, paddockd (scripts/setup) and the cached templates.
import { existsSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { Sandbox, Template, waitForFile } from 'e2b'
import { Sandbox as Interpreter } from '@e2b/code-interpreter'
import { startDaemon, waitUntil } from './lib/daemon.mjs'

const runs = Number(process.argv[2] ?? 5)
const CREATE = { requestTimeoutMs: 15 * 60_000 }
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Waits (at most 3 min) until the daemon's state directory holds a complete start image of a template (its id). */
async function waitForImage(daemon, isTemplate) {
  const root = path.join(daemon.stateDir, 'start-images')
  const complete = () => existsSync(root) && readdirSync(root).filter(isTemplate)
    .some((t) => readdirSync(path.join(root, t)).some((d) => !d.startsWith('.')))
  await waitUntil(complete, 180_000, 'a start image', 250)
}

async function plain(daemon, images) {
  const template = Template()
    .fromBaseImage()
    // Base has no ss or curl (the SDK's waitForPort and waitForURL): the server writes a file once it listens.
    .setStartCmd('python3 -c "import functools, http.server as h; s = h.ThreadingHTTPServer((\'127.0.0.1\', 8000), ' +
      'functools.partial(h.SimpleHTTPRequestHandler, directory=\'/tmp\')); open(\'/tmp/listening\', \'w\').close(); s.serve_forever()"',
    waitForFile('/tmp/listening'))
  await Template.build(template, 'bench-start')
  const times = []
  for (let i = 0; i < runs + 1; i++) {
    const t0 = performance.now()
    const sandbox = await Sandbox.create('bench-start', CREATE)
    const out = await sandbox.commands.run('python3 -c "import urllib.request; print(urllib.request.urlopen(\'http://127.0.0.1:8000/\', timeout=5).status)"')
    const ms = performance.now() - t0
    if (out.stdout.trim() !== '200') throw new Error(`listener answered ${out.stdout}`)
    await sandbox.kill()
    console.log(`  plain start command, images ${images}, create ${i}: ${ms.toFixed(0)} ms`)
    if (i === 0 && images === 'on') {
      await waitForImage(daemon, (t) => t !== 'code-interpreter')
    }
    if (i > 0) times.push(ms)
  }
  return times
}

async function interpreter(daemon, images) {
  const times = []
  for (let i = 0; i < runs + 1; i++) {
    const t0 = performance.now()
    const sandbox = await Interpreter.create(CREATE)
    const result = await sandbox.runCode('print(1)')
    const ms = performance.now() - t0
    if (result.logs.stdout.join('') !== '1\n') throw new Error(`runCode gave ${JSON.stringify(result)}`)
    await sandbox.kill()
    console.log(`  code-interpreter, images ${images}, create ${i}: ${ms.toFixed(0)} ms`)
    if (i === 0 && images === 'on') {
      await waitForImage(daemon, (t) => t === 'code-interpreter')
    }
    if (i > 0) times.push(ms)
  }
  return times
}

const figures = {}
for (const images of ['off', 'on']) {
  const daemon = await startDaemon({ env: { PADDOCK_ISOLATION: 'gvisor', PADDOCK_START_IMAGES: images } })
  try {
    figures[`plain_${images}`] = await plain(daemon, images)
    figures[`interp_${images}`] = await interpreter(daemon, images)
  } catch (error) {
    console.log(`images ${images}: ${error.stack}\n${daemon.log().slice(-4000)}`)
  } finally {
    for (const line of daemon.log().split('\n').filter((l) => /StartImages\[|Server-Timing|pool/i.test(l))) console.log(`  log: ${line.slice(0, 400)}`)
    await daemon.stop()
  }
}
for (const [name, xs] of Object.entries(figures)) {
  console.log(`${name}: median ${median(xs).toFixed(0)} ms of ${xs.length} (${xs.map((x) => x.toFixed(0)).join(', ')}); first create excluded`)
}
process.exit(0)
