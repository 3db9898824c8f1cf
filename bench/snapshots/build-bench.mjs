// Template build figures (issue 7), with the official e2b SDK's Template.build against a real paddockd:
// a build of base + 3 RUN steps with nothing cached, then the same build with only the last step changed (the first
// two come from the layer cache), against the baseline of creating one sandbox from base and running the same three
// commands in it (what a build cannot do faster than).
// With --apt PKG, also the build of base + aptInstall([PKG]) (issue 7's "base + one apt package"), uncached and then
// cached, against one sandbox from base running the same apt-get as root. That figure makes the build sandbox fetch
// from the Debian mirror the host's own APT uses (over the sandbox's default egress), so it is off unless asked for.
// Usage (root, runc, paddockd built in Release, tests/e2b-sdk's npm ci done):
//   node bench/snapshots/build-bench.mjs [--apt jq]
import { Sandbox, Template } from '../../tests/e2b-sdk/node_modules/e2b/dist/index.mjs'
import { startDaemon, whyNotRunnable } from '../../tests/e2b-sdk/daemon/lib/daemon.mjs'

const why = whyNotRunnable()
if (why) {
  console.error(`build-bench: cannot run here: ${why}`)
  process.exit(2)
}
const CREATE = { requestTimeoutMs: 15 * 60_000 }
const time = async (f) => { const t = performance.now(); const r = await f(); return [performance.now() - t, r] }
const commands = ['head -c 20M /dev/urandom > /home/user/one', 'seq 1 100000 > /home/user/two']
const aptArg = process.argv.indexOf('--apt')
const aptPackage = aptArg > 0 ? process.argv[aptArg + 1] : undefined
if (aptPackage !== undefined && !/^[a-z0-9][a-z0-9+.-]{0,62}$/.test(aptPackage)) {
  console.error(`build-bench: --apt needs one Debian package name, not '${aptPackage}'`)
  process.exit(2)
}
const template = (last) => Template().fromBaseImage().runCmd(commands[0]).runCmd(commands[1]).runCmd(last)

const daemon = await startDaemon()
try {
  const warm = await Sandbox.create('base', CREATE) // base built and recorded before anything is timed
  await warm.kill()
  const [baseline] = await time(async () => {
    const s = await Sandbox.create('base', CREATE)
    for (const c of [...commands, 'echo first > /home/user/three']) {
      await s.commands.run(c)
    }
    await s.kill()
  })
  const logs = []
  const [first] = await time(() => Template.build(template('echo first > /home/user/three'), 'bench-build', { onBuildLogs: (l) => logs.push(l.message) }))
  const before = logs.length
  const [rebuild] = await time(() => Template.build(template('echo second > /home/user/three'), 'bench-build', { onBuildLogs: (l) => logs.push(l.message) }))
  const cached = logs.slice(before).filter((l) => l.startsWith('CACHED ')).length
  console.log(`baseline, one sandbox running the 3 commands: ${baseline.toFixed(0)} ms`)
  console.log(`build, nothing cached: ${first.toFixed(0)} ms | ratio ${(first / baseline).toFixed(2)}x`)
  console.log(`rebuild, last step changed (${cached} steps cached): ${rebuild.toFixed(0)} ms | ratio ${(rebuild / baseline).toFixed(2)}x`)
  if (aptPackage) {
    // The same command the SDK's aptInstall step runs, as root, in a plain sandbox: the floor for the build.
    const [aptBaseline, run] = await time(async () => {
      const s = await Sandbox.create('base', CREATE)
      try {
        return await s.commands.run(`apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${aptPackage}`,
          { user: 'root', timeoutMs: 10 * 60_000 })
      } finally {
        await s.kill()
      }
    })
    if (run.exitCode !== 0) throw new Error(`apt-get in a sandbox failed (no route to the mirror?): ${run.stderr}`)
    const aptTemplate = () => Template().fromBaseImage().aptInstall([aptPackage])
    const name = 'bench-build-apt'
    const [aptFirst] = await time(() => Template.build(aptTemplate(), name, { skipCache: true }))
    const aptLogs = []
    const [aptCached] = await time(() => Template.build(aptTemplate(), name, { onBuildLogs: (l) => aptLogs.push(l.message) }))
    const aptHits = aptLogs.filter((l) => l.startsWith('CACHED ')).length
    console.log(`baseline, one sandbox running apt-get install ${aptPackage}: ${aptBaseline.toFixed(0)} ms`)
    console.log(`build, base + aptInstall(${aptPackage}), nothing cached: ${aptFirst.toFixed(0)} ms | ratio ${(aptFirst / aptBaseline).toFixed(2)}x`)
    console.log(`rebuild, same steps (${aptHits} steps cached): ${aptCached.toFixed(0)} ms | ratio ${(aptCached / aptBaseline).toFixed(2)}x`)
  }
} finally {
  await daemon.stop()
}
