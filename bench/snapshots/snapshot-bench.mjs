// Filesystem snapshot figures (issue 7), with the official e2b SDK against a real paddockd (runc tier), in one run:
//   1. snapshot time of a sandbox with 100 MB of changes, against two baselines measured in the same run: a snapshot
//      of a sandbox with no changes (the fixed cost: freeze, thaw, register) and a host `cp` of the same 100 MB file
//      on the same filesystem (the copy's floor);
//   2. create-to-first-output from a snapshot against the same from base, runs alternating.
// Usage (root, runc, paddockd built in Release, tests/e2b-sdk's npm ci done):
//   node bench/snapshots/snapshot-bench.mjs [--runs N]
// Every sandbox and snapshot it makes is removed at the end, also on failure; every loop is bounded by its count.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import path from 'node:path'
import { Sandbox } from '../../tests/e2b-sdk/node_modules/e2b/dist/index.mjs'
import { startDaemon, whyNotRunnable } from '../../tests/e2b-sdk/daemon/lib/daemon.mjs'

const runsArg = process.argv.indexOf('--runs')
const RUNS = runsArg > 0 ? Math.min(50, Math.max(1, Number(process.argv[runsArg + 1]))) : 5
const CREATE = { requestTimeoutMs: 15 * 60_000 }
const MB = 100

const why = whyNotRunnable()
if (why) {
  console.error(`snapshot-bench: cannot run here: ${why}`)
  process.exit(2)
}

const p50 = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]
const fmt = (ms) => `${ms.toFixed(0)} ms`
const time = async (f) => { const t = performance.now(); const r = await f(); return [performance.now() - t, r] }

const daemon = await startDaemon()
const sandboxes = []
const snapshots = []
try {
  const changed = await Sandbox.create('base', CREATE)
  const clean = await Sandbox.create('base', CREATE)
  sandboxes.push(changed, clean)
  const fill = await changed.commands.run(`head -c ${MB}M /dev/urandom > /home/user/blob && sync`, { timeoutMs: 120_000 })
  if (fill.exitCode !== 0) throw new Error(`filling the sandbox failed: ${fill.stderr}`)

  // The host's copy of the same bytes on the daemon's state filesystem: what a snapshot cannot beat on ext4.
  const scratch = mkdtempSync(path.join(daemon.stateDir, 'bench-'))
  spawnSync('sh', ['-c', `head -c ${MB}M /dev/urandom > ${scratch}/src && sync`])

  const snap100 = []; const snap0 = []; const cp = []
  for (let i = 0; i < RUNS; i++) {
    const [a, s1] = await time(() => changed.createSnapshot())
    snapshots.push(s1.snapshotId); snap100.push(a)
    const [b, s2] = await time(() => clean.createSnapshot())
    snapshots.push(s2.snapshotId); snap0.push(b)
    const [c] = await time(async () => {
      const r = spawnSync('cp', ['-a', '--reflink=auto', `${scratch}/src`, `${scratch}/dst${i}`])
      if (r.status !== 0) throw new Error('cp failed')
    })
    cp.push(c)
  }
  rmSync(scratch, { recursive: true, force: true })

  // Create to first output, from base and from a snapshot (with the 100 MB) alternating.
  const fromSnapshot = snapshots[0]
  const createBase = []; const createSnap = []
  const createAndEcho = async (template) => {
    const [ms, sbx] = await time(async () => {
      const s = await Sandbox.create(template, CREATE)
      const r = await s.commands.run('echo hi')
      if (r.stdout !== 'hi\n') throw new Error(`unexpected output ${r.stdout}`)
      return s
    })
    await sbx.kill()
    return ms
  }
  await createAndEcho('base') // warmup
  for (let i = 0; i < RUNS * 2; i++) {
    createBase.push(await createAndEcho('base'))
    createSnap.push(await createAndEcho(fromSnapshot))
  }

  const rows = [
    ['snapshot, 100 MB of changes', p50(snap100), Math.max(...snap100), 'snapshot, no changes', p50(snap0)],
    ['snapshot, 100 MB of changes', p50(snap100), Math.max(...snap100), `host cp of ${MB} MB`, p50(cp)],
    ['create to first output from a snapshot', p50(createSnap), Math.max(...createSnap), 'from base', p50(createBase)],
  ]
  console.log(`runs: ${RUNS} snapshots of each kind, ${RUNS * 2} creates of each kind; p50 and max`)
  for (const [what, median, max, baseName, base] of rows) {
    console.log(`${what}: p50 ${fmt(median)}, max ${fmt(max)} | ${baseName}: p50 ${fmt(base)} | ratio ${(median / base).toFixed(2)}x`)
  }
  console.log(JSON.stringify({ runs: RUNS, snapshot100MbP50Ms: p50(snap100), snapshotEmptyP50Ms: p50(snap0), hostCpP50Ms: p50(cp), createFromSnapshotP50Ms: p50(createSnap), createFromBaseP50Ms: p50(createBase) }))
} finally {
  for (const s of sandboxes) await s.kill().catch(() => {})
  for (const id of snapshots) await Sandbox.deleteSnapshot(id).catch(() => {})
  await daemon.stop()
}
