'use strict'
// The JavaScript side of paddock-interp's JavaScript kernel (python/paddock_js_kernel.py drives it).
// Cells arrive as JSON lines on stdin ({"code": "..."}). Each runs in this process's own global scope, so top-level
// declarations, imports through require and globals persist from cell to cell. console.* and process.stdout go
// to the real stdout/stderr pipes (synchronous on Linux, so in order). Results and errors go as JSON lines to the
// event pipe (its fd number is the last argument); after each cell a marker line ends all three pipes.
// With --typescript each cell is TypeScript: its types are stripped by the template's TypeScript compiler
// (transpileModule: one cell at a time, syntax errors reported, types not checked), then it runs as JavaScript.
const vm = require('node:vm')
const fs = require('node:fs')
const util = require('node:util')
const path = require('node:path')
const readline = require('node:readline')
const { createRequire } = require('node:module')

const MARKER = '\x1epaddock-cell-end\x1e'
const eventFd = Number(process.argv[process.argv.length - 1])
const typescript = process.argv.includes('--typescript') ? require('typescript') : null

// require() from the context's directory, as a script there would resolve modules.
globalThis.require = createRequire(path.join(process.cwd(), 'cell.js'))
globalThis.module = { exports: {} }
globalThis.exports = globalThis.module.exports
globalThis.__filename = path.join(process.cwd(), 'cell.js')
globalThis.__dirname = process.cwd()
globalThis.display = (value) => emit({ type: 'display', data: mimeBundle(value) })

let current = null
// An interrupt (SIGINT from the kernel) stops a synchronous cell (breakOnSigint below) and rejects an awaiting one.
process.on('SIGINT', () => {
  if (current) {
    current(new Error('Script execution was interrupted by `SIGINT`'))
  }
})

function emit (event) {
  fs.writeSync(eventFd, JSON.stringify(event) + '\n')
}

function mimeBundle (value) {
  const data = { 'text/plain': util.inspect(value, { depth: 4, colors: false }) }
  if (value !== null && typeof value === 'object') {
    try {
      data['application/json'] = JSON.parse(JSON.stringify(value))
    } catch {
      // Not JSON (cycles, BigInt): the text stays.
    }
  }
  return data
}

// A cell that uses top-level await cannot run as a script: it is wrapped in an async function. Its top-level
// declarations (const/let/var/function/class at the start of a line) become globals, so they persist as they do
// in a script, and a last line that is an expression becomes the value (as Node's REPL does, more simply).
function asAsync (code) {
  const lines = code.split('\n')
  const rewritten = lines.map((line) => line
    .replace(/^(?:const|let|var)\s+([A-Za-z_$][\w$]*)\s*=/, 'globalThis.$1 =')
    .replace(/^(?:async\s+)?function\s*\*?\s*([A-Za-z_$][\w$]*)\s*\(/, (m, name) => `globalThis.${name} = ${m.replace(name, '')}`)
    .replace(/^class\s+([A-Za-z_$][\w$]*)/, 'globalThis.$1 = class $1'))
  let last = rewritten.length - 1
  while (last >= 0 && rewritten[last].trim() === '') last--
  if (last >= 0) {
    const tail = rewritten[last].trim().replace(/;$/, '')
    if (tail && !/^(?:return|if|for|while|do|switch|try|throw|import|export|globalThis\.[\w$]+\s*=|[}\])])/.test(tail) && !/[{,]$/.test(tail)) {
      rewritten[last] = `return (${tail})`
    }
  }
  return `(async () => {\n${rewritten.join('\n')}\n})()`
}

// A TypeScript cell as JavaScript: modern syntax kept (Node runs it), imports as require (the cells are scripts).
function stripTypes (code) {
  const out = typescript.transpileModule(code, {
    fileName: 'cell.ts',
    reportDiagnostics: true,
    compilerOptions: { target: typescript.ScriptTarget.ES2020, module: typescript.ModuleKind.CommonJS, esModuleInterop: true },
  })
  const errors = (out.diagnostics || []).filter((d) => d.category === typescript.DiagnosticCategory.Error)
  if (errors.length > 0) {
    const err = new SyntaxError(errors.map((d) => {
      const text = typescript.flattenDiagnosticMessageText(d.messageText, '\n')
      if (d.file && d.start !== undefined) {
        const { line, character } = d.file.getLineAndCharacterOfPosition(d.start)
        return `cell.ts(${line + 1},${character + 1}): TS${d.code}: ${text}`
      }
      return `TS${d.code}: ${text}`
    }).join('\n'))
    err.stack = `SyntaxError: ${err.message}`
    throw err
  }
  // The emit of a cell without imports or exports is the cell without its types; one with them starts with the
  // CommonJS preamble, which assigns to the exports global above.
  return out.outputText
}

async function run (source) {
  const code = typescript ? stripTypes(source) : source
  let script
  let isAsync = false
  try {
    script = new vm.Script(code, { filename: 'cell.js' })
  } catch (err) {
    if (err instanceof SyntaxError && /await/.test(code)) {
      script = new vm.Script(asAsync(code), { filename: 'cell.js' })
      isAsync = true
    } else {
      throw err
    }
  }
  let value = script.runInThisContext({ breakOnSigint: true, displayErrors: false })
  if (isAsync || (value && typeof value.then === 'function')) {
    value = await new Promise((resolve, reject) => {
      current = reject
      Promise.resolve(value).then(resolve, reject)
    }).finally(() => { current = null })
  }
  return value
}

const input = readline.createInterface({ input: process.stdin, terminal: false })
const cells = []
let busy = false
input.on('line', (line) => {
  cells.push(JSON.parse(line).code)
  if (!busy) next()
})

async function next () {
  busy = true
  while (cells.length > 0) {
    const code = cells.shift()
    try {
      const value = await run(code)
      if (value !== undefined) {
        emit({ type: 'result', data: mimeBundle(value) })
      }
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err))
      // The stack down to the cell: the frames below it are this runner's.
      const stack = String(e.stack || e).split('\n')
      const own = stack.findIndex((line) => /\(node:vm:|sigintHandlersWrap|js-kernel\.cjs/.test(line))
      emit({ type: 'error', ename: e.name || 'Error', evalue: e.message || String(err), traceback: [(own > 0 ? stack.slice(0, own) : stack).join('\n')] })
    }
    process.stdout.write(MARKER + '\n')
    process.stderr.write(MARKER + '\n')
    fs.writeSync(eventFd, MARKER + '\n')
  }
  busy = false
}
