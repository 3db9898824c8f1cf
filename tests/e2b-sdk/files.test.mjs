// sandbox.files.* of the official E2B SDK against a local paddock-agent. The agent runs on this host, so what it
// writes and reports is checked against node:fs directly.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import path from 'node:path'
import { FileNotFoundError, FilesystemEventType, InvalidArgumentError, SandboxError } from 'e2b'
import { startAgent, withTimeout } from './lib/agent.mjs'

const T = { timeout: 30_000 }

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

/** Reads a web ReadableStream to the end. */
async function collect(stream) {
  const parts = []
  for await (const chunk of stream) {
    parts.push(Buffer.from(chunk))
  }
  return Buffer.concat(parts)
}

/** A watchDir callback that records events and lets a test wait for one that matches. */
function eventLog() {
  const events = []
  const waiters = []
  return {
    events,
    onEvent: (e) => {
      events.push(e)
      for (const w of [...waiters]) {
        if (w.match(e)) {
          waiters.splice(waiters.indexOf(w), 1)
          w.resolve(e)
        }
      }
    },
    next: (match, what) => {
      const found = events.find(match)
      if (found) {
        return Promise.resolve(found)
      }
      const p = new Promise((resolve) => waiters.push({ match, resolve }))
      return withTimeout(p, 10_000, `${what} (events so far: ${JSON.stringify(events.map((e) => [e.type, e.name]))})`)
    },
  }
}

describe('files', () => {
  let agent
  let sandbox
  let root
  let n = 0
  /** A fresh directory for one test, inside the agent's temporary directory. */
  const fresh = () => {
    const dir = path.join(root, `t${++n}`)
    mkdirSync(dir)
    return dir
  }

  before(async () => {
    agent = await startAgent()
    sandbox = await agent.sandbox()
    root = agent.dir
  })

  after(async () => {
    await agent?.stop()
  })

  describe('write and read', () => {
    it('writes text and reads it back as text; the returned info names the file', T, async () => {
      const file = path.join(fresh(), 'hello.txt')
      const info = await sandbox.files.write(file, 'Hello, Paddock!\nzażółć 🚀\n')
      assert.equal(info.path, file)
      assert.equal(info.name, 'hello.txt')
      assert.equal(info.type, 'file')
      assert.equal(readFileSync(file, 'utf8'), 'Hello, Paddock!\nzażółć 🚀\n')
      assert.equal(await sandbox.files.read(file), 'Hello, Paddock!\nzażółć 🚀\n')
    })

    it('overwrites an existing file (shorter content truncates it)', T, async () => {
      const file = path.join(fresh(), 'over.txt')
      await sandbox.files.write(file, 'a much longer first version')
      await sandbox.files.write(file, 'short')
      assert.equal(readFileSync(file, 'utf8'), 'short')
    })

    it('creates missing parent directories', T, async () => {
      const file = path.join(fresh(), 'a', 'b', 'c', 'deep.txt')
      await sandbox.files.write(file, 'deep')
      assert.equal(readFileSync(file, 'utf8'), 'deep')
    })

    it('writes every byte value and reads bytes, blob and stream back unchanged', T, async () => {
      const file = path.join(fresh(), 'bytes.bin')
      const bytes = new Uint8Array(4096).map((_, i) => i % 256)
      await sandbox.files.write(file, bytes)
      assert.ok(readFileSync(file).equals(Buffer.from(bytes)), 'bytes on disk')
      const asBytes = await sandbox.files.read(file, { format: 'bytes' })
      assert.ok(asBytes instanceof Uint8Array)
      assert.ok(Buffer.from(asBytes).equals(Buffer.from(bytes)), 'format: bytes')
      const blob = await sandbox.files.read(file, { format: 'blob' })
      assert.ok(Buffer.from(await blob.arrayBuffer()).equals(Buffer.from(bytes)), 'format: blob')
      const stream = await sandbox.files.read(file, { format: 'stream' })
      assert.ok((await collect(stream)).equals(Buffer.from(bytes)), 'format: stream')
    })

    it('moves 4 MiB of random data both ways intact', T, async () => {
      const file = path.join(fresh(), 'big.bin')
      const data = randomBytes(4 * 1024 * 1024)
      await sandbox.files.write(file, data)
      assert.equal(sha256(readFileSync(file)), sha256(data))
      const back = await sandbox.files.read(file, { format: 'stream' })
      assert.equal(sha256(await collect(back)), sha256(data))
    })

    it('uploads as application/octet-stream, from a stream, and gzip-compressed', T, async () => {
      const dir = fresh()
      const data = randomBytes(300_000)
      await sandbox.files.write(path.join(dir, 'octet.bin'), data, { useOctetStream: true })
      assert.equal(sha256(readFileSync(path.join(dir, 'octet.bin'))), sha256(data))
      const stream = new ReadableStream({
        start(controller) {
          for (let i = 0; i < data.length; i += 65536) {
            controller.enqueue(data.subarray(i, i + 65536))
          }
          controller.close()
        },
      })
      await sandbox.files.write(path.join(dir, 'streamed.bin'), stream)
      assert.equal(sha256(readFileSync(path.join(dir, 'streamed.bin'))), sha256(data))
      await sandbox.files.write(path.join(dir, 'gzip.bin'), data, { gzip: true })
      assert.equal(sha256(readFileSync(path.join(dir, 'gzip.bin'))), sha256(data))
    })

    it('reads with gzip accepted', T, async () => {
      const file = path.join(fresh(), 'text.txt')
      const text = 'compressible '.repeat(10_000)
      writeFileSync(file, text)
      assert.equal(await sandbox.files.read(file, { gzip: true }), text)
    })

    it('writes several files in one call', T, async () => {
      const dir = fresh()
      const infos = await sandbox.files.write([
        { path: path.join(dir, 'one.txt'), data: 'first' },
        { path: path.join(dir, 'sub', 'two.bin'), data: new Uint8Array([0, 1, 2, 255]) },
        { path: path.join(dir, 'three.txt'), data: new Blob(['third']) },
      ])
      assert.equal(infos.length, 3)
      assert.deepEqual(infos.map((i) => i.path).sort(), [path.join(dir, 'one.txt'), path.join(dir, 'sub', 'two.bin'), path.join(dir, 'three.txt')].sort())
      assert.equal(readFileSync(path.join(dir, 'one.txt'), 'utf8'), 'first')
      assert.deepEqual([...readFileSync(path.join(dir, 'sub', 'two.bin'))], [0, 1, 2, 255])
      assert.equal(await sandbox.files.read(path.join(dir, 'three.txt')), 'third')
    })

    it('reads an empty file as empty text and empty bytes', T, async () => {
      const file = path.join(fresh(), 'empty')
      writeFileSync(file, '')
      assert.equal(await sandbox.files.read(file), '')
      const bytes = await sandbox.files.read(file, { format: 'bytes' })
      assert.equal(bytes.length, 0)
    })

    it('throws FileNotFoundError for a file that does not exist', T, async () => {
      await assert.rejects(sandbox.files.read(path.join(root, 'missing.txt')), FileNotFoundError)
    })

    it('refuses to read a directory with 400 (InvalidArgumentError)', T, async () => {
      await assert.rejects(sandbox.files.read(fresh()), InvalidArgumentError)
    })

    it('resolves a relative path against the user\'s home directory', T, async () => {
      const name = `paddock-e2b-relative-${process.pid}-${Date.now()}.txt`
      const home = userInfo().homedir
      try {
        const info = await sandbox.files.write(name, 'relative')
        assert.equal(info.path, path.join(home, name))
        assert.equal(readFileSync(path.join(home, name), 'utf8'), 'relative')
      } finally {
        await sandbox.files.remove(name)
      }
      assert.equal(existsSync(path.join(home, name)), false)
    })
  })

  describe('list', () => {
    let dir
    before(() => {
      dir = fresh()
      mkdirSync(path.join(dir, 'sub1', 'sub1a'), { recursive: true })
      mkdirSync(path.join(dir, 'sub2'))
      writeFileSync(path.join(dir, 'file.txt'), 'x')
      writeFileSync(path.join(dir, 'sub1', 'inner.txt'), 'yy')
      writeFileSync(path.join(dir, 'sub1', 'sub1a', 'deepest.txt'), 'zzz')
    })

    const summary = (entries) => entries.map((e) => `${e.type}:${path.relative(dir, e.path)}`).sort()

    it('lists one level by default, with names, types and absolute paths', T, async () => {
      const entries = await sandbox.files.list(dir)
      assert.deepEqual(summary(entries), ['dir:sub1', 'dir:sub2', 'file:file.txt'])
      const file = entries.find((e) => e.name === 'file.txt')
      assert.equal(file.path, path.join(dir, 'file.txt'))
      assert.equal(file.size, 1)
    })

    it('descends depth levels', T, async () => {
      assert.deepEqual(summary(await sandbox.files.list(dir, { depth: 2 })), [
        'dir:sub1',
        'dir:sub1/sub1a',
        'dir:sub2',
        'file:file.txt',
        'file:sub1/inner.txt',
      ])
      assert.deepEqual(summary(await sandbox.files.list(dir, { depth: 3 })), [
        'dir:sub1',
        'dir:sub1/sub1a',
        'dir:sub2',
        'file:file.txt',
        'file:sub1/inner.txt',
        'file:sub1/sub1a/deepest.txt',
      ])
      assert.equal((await sandbox.files.list(dir, { depth: 10 })).length, 6)
    })

    it('throws FileNotFoundError for a directory that does not exist', T, async () => {
      await assert.rejects(sandbox.files.list(path.join(dir, 'nope')), FileNotFoundError)
    })

    it('refuses to list a file with InvalidArgumentError', T, async () => {
      await assert.rejects(sandbox.files.list(path.join(dir, 'file.txt')), InvalidArgumentError)
    })
  })

  describe('exists and getInfo', () => {
    it('tells files and directories that exist from ones that do not', T, async () => {
      const dir = fresh()
      writeFileSync(path.join(dir, 'f'), '')
      assert.equal(await sandbox.files.exists(path.join(dir, 'f')), true)
      assert.equal(await sandbox.files.exists(dir), true)
      assert.equal(await sandbox.files.exists(path.join(dir, 'missing')), false)
    })

    it('reports a file\'s fields as stat(2) sees them', T, async () => {
      const file = path.join(fresh(), 'info.txt')
      writeFileSync(file, 'twelve bytes', { mode: 0o640 })
      const st = statSync(file)
      const info = await sandbox.files.getInfo(file)
      assert.equal(info.name, 'info.txt')
      assert.equal(info.type, 'file')
      assert.equal(info.path, file)
      assert.equal(info.size, 12)
      assert.equal(info.mode & 0o777, 0o640)
      assert.equal(info.permissions, '-rw-r-----')
      assert.equal(info.owner, userInfo().username)
      assert.ok(typeof info.group === 'string' && info.group.length > 0, `group '${info.group}'`)
      assert.ok(info.modifiedTime instanceof Date)
      assert.ok(Math.abs(info.modifiedTime.getTime() - st.mtimeMs) < 1, `mtime ${info.modifiedTime.toISOString()} vs ${st.mtime.toISOString()}`)
      assert.equal(info.symlinkTarget, undefined)
    })

    it('reports a directory', T, async () => {
      const dir = fresh()
      const info = await sandbox.files.getInfo(dir)
      assert.equal(info.type, 'dir')
      assert.equal(info.name, path.basename(dir))
      assert.equal(info.path, dir)
      assert.equal(info.mode & 0o777, statSync(dir).mode & 0o777)
      assert.match(info.permissions, /^d[rwx-]{9}$/)
    })

    it('reports a symlink as a symlink, with its resolved target', T, async () => {
      const dir = fresh()
      writeFileSync(path.join(dir, 'target.txt'), 'target')
      symlinkSync('target.txt', path.join(dir, 'link'))
      const info = await sandbox.files.getInfo(path.join(dir, 'link'))
      assert.equal(info.name, 'link')
      assert.equal(info.path, path.join(dir, 'link'))
      // The link's own type (the proto's FILE_TYPE_SYMLINK, which the SDK maps to FileType.SYMLINK), with
      // the target resolved to an absolute path as the SDK's own info test expects.
      assert.equal(info.symlinkTarget, path.join(dir, 'target.txt'))
      assert.equal(info.type, 'symlink')
    })

    it('throws FileNotFoundError for a path that does not exist', T, async () => {
      await assert.rejects(sandbox.files.getInfo(path.join(root, 'missing')), FileNotFoundError)
    })
  })

  describe('makeDir, rename, remove', () => {
    it('makes a directory with its parents, and answers false when it exists', T, async () => {
      const dir = path.join(fresh(), 'x', 'y', 'z')
      assert.equal(await sandbox.files.makeDir(dir), true)
      assert.ok(statSync(dir).isDirectory())
      assert.equal(await sandbox.files.makeDir(dir), false)
    })

    it('refuses to make a directory where a file is, leaving the file alone', T, async () => {
      const file = path.join(fresh(), 'file')
      writeFileSync(file, 'keep')
      await assert.rejects(sandbox.files.makeDir(file), InvalidArgumentError)
      assert.equal(readFileSync(file, 'utf8'), 'keep')
      await assert.rejects(sandbox.files.makeDir(path.join(file, 'below')), SandboxError)
    })

    it('renames a file and returns the new entry', T, async () => {
      const dir = fresh()
      writeFileSync(path.join(dir, 'old.txt'), 'moving')
      const info = await sandbox.files.rename(path.join(dir, 'old.txt'), path.join(dir, 'new.txt'))
      assert.equal(info.path, path.join(dir, 'new.txt'))
      assert.equal(info.name, 'new.txt')
      assert.equal(info.type, 'file')
      assert.equal(existsSync(path.join(dir, 'old.txt')), false)
      assert.equal(readFileSync(path.join(dir, 'new.txt'), 'utf8'), 'moving')
    })

    it('moves a directory into a new parent', T, async () => {
      const dir = fresh()
      mkdirSync(path.join(dir, 'src'))
      writeFileSync(path.join(dir, 'src', 'inside.txt'), 'in')
      const info = await sandbox.files.rename(path.join(dir, 'src'), path.join(dir, 'dst', 'moved'))
      assert.equal(info.type, 'dir')
      assert.equal(readFileSync(path.join(dir, 'dst', 'moved', 'inside.txt'), 'utf8'), 'in')
    })

    it('throws FileNotFoundError when renaming what does not exist', T, async () => {
      const dir = fresh()
      await assert.rejects(sandbox.files.rename(path.join(dir, 'ghost'), path.join(dir, 'other')), FileNotFoundError)
    })

    it('removes a file and a non-empty directory', T, async () => {
      const dir = fresh()
      writeFileSync(path.join(dir, 'f.txt'), 'f')
      mkdirSync(path.join(dir, 'tree', 'deeper'), { recursive: true })
      writeFileSync(path.join(dir, 'tree', 'deeper', 'g.txt'), 'g')
      await sandbox.files.remove(path.join(dir, 'f.txt'))
      assert.equal(existsSync(path.join(dir, 'f.txt')), false)
      await sandbox.files.remove(path.join(dir, 'tree'))
      assert.equal(existsSync(path.join(dir, 'tree')), false)
      assert.equal(await sandbox.files.exists(path.join(dir, 'tree')), false)
    })
  })

  describe('watchDir', () => {
    it('reports create, write, rename and remove in the watched directory', T, async () => {
      const dir = fresh()
      const log = eventLog()
      const handle = await sandbox.files.watchDir(dir, log.onEvent, { timeoutMs: 20_000 })
      try {
        await sandbox.files.write(path.join(dir, 'w.txt'), 'first')
        await log.next((e) => e.type === FilesystemEventType.CREATE && e.name === 'w.txt', 'a create event for w.txt')
        await log.next((e) => e.type === FilesystemEventType.WRITE && e.name === 'w.txt', 'a write event for w.txt')
        await sandbox.files.rename(path.join(dir, 'w.txt'), path.join(dir, 'renamed.txt'))
        await log.next((e) => e.type === FilesystemEventType.RENAME && e.name === 'w.txt', 'a rename event for w.txt')
        await sandbox.files.remove(path.join(dir, 'renamed.txt'))
        await log.next((e) => e.type === FilesystemEventType.REMOVE && e.name === 'renamed.txt', 'a remove event for renamed.txt')
        await sandbox.files.makeDir(path.join(dir, 'newdir'))
        await log.next((e) => e.type === FilesystemEventType.CREATE && e.name === 'newdir', 'a create event for newdir')
      } finally {
        await handle.stop()
      }
    })

    it('reports changes the agent did not make (inotify, not bookkeeping)', T, async () => {
      const dir = fresh()
      const log = eventLog()
      const handle = await sandbox.files.watchDir(dir, log.onEvent, { timeoutMs: 20_000 })
      try {
        writeFileSync(path.join(dir, 'outside.txt'), 'written by the test process')
        await log.next((e) => e.type === FilesystemEventType.WRITE && e.name === 'outside.txt', 'a write event for outside.txt')
      } finally {
        await handle.stop()
      }
    })

    it('does not report changes in subdirectories unless recursive', T, async () => {
      const dir = fresh()
      mkdirSync(path.join(dir, 'sub'))
      const log = eventLog()
      const handle = await sandbox.files.watchDir(dir, log.onEvent, { timeoutMs: 20_000 })
      try {
        writeFileSync(path.join(dir, 'sub', 'hidden.txt'), 'x')
        writeFileSync(path.join(dir, 'marker.txt'), 'x')
        await log.next((e) => e.name === 'marker.txt', 'an event for marker.txt')
        // inotify delivers one watch's events in order: a nested event, if reported, would have come first.
        assert.ok(!log.events.some((e) => e.name.includes('hidden')), `unexpected nested events: ${JSON.stringify(log.events)}`)
      } finally {
        await handle.stop()
      }
    })

    it('reports nested changes with relative names when recursive, also in directories made after it started', T, async () => {
      const dir = fresh()
      mkdirSync(path.join(dir, 'a'))
      const log = eventLog()
      const handle = await sandbox.files.watchDir(dir, log.onEvent, { recursive: true, timeoutMs: 20_000 })
      try {
        await sandbox.files.write(path.join(dir, 'a', 'nested.txt'), 'x')
        await log.next((e) => e.type === FilesystemEventType.WRITE && e.name === 'a/nested.txt', 'a write event for a/nested.txt')
        await sandbox.files.makeDir(path.join(dir, 'b'))
        await log.next((e) => e.type === FilesystemEventType.CREATE && e.name === 'b', 'a create event for b')
        await sandbox.files.write(path.join(dir, 'b', 'later.txt'), 'y')
        await log.next((e) => e.type === FilesystemEventType.WRITE && e.name === 'b/later.txt', 'a write event for b/later.txt')
      } finally {
        await handle.stop()
      }
    })

    it('includes entry info when asked', T, async () => {
      const dir = fresh()
      const log = eventLog()
      const handle = await sandbox.files.watchDir(dir, log.onEvent, { includeEntry: true, timeoutMs: 20_000 })
      try {
        await sandbox.files.write(path.join(dir, 'with-entry.txt'), 'abc')
        const e = await log.next((ev) => ev.type === FilesystemEventType.WRITE && ev.name === 'with-entry.txt' && ev.entry?.size === 3, 'a write event with entry size 3')
        assert.equal(e.entry.type, 'file')
        assert.equal(e.entry.path, path.join(dir, 'with-entry.txt'))
      } finally {
        await handle.stop()
      }
    })

    it('throws FileNotFoundError for a directory that does not exist', T, async () => {
      await assert.rejects(sandbox.files.watchDir(path.join(root, 'no-such-dir'), () => {}), FileNotFoundError)
    })

    it('refuses to watch a file with InvalidArgumentError', T, async () => {
      const file = path.join(fresh(), 'plain.txt')
      writeFileSync(file, '')
      await assert.rejects(sandbox.files.watchDir(file, () => {}), InvalidArgumentError)
    })
  })
})
