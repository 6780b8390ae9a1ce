/**
 * The floor under pgwitness's memory per idle TLS client connection: a bare
 * Node.js TLS server (no proxy state at all) with N idle TLS clients, RSS
 * measured after a forced GC before and after they connect.
 *   npx tsx bench/tls-idle-memory.ts [--connections 1000] [--gc full|last-resort]
 * The server runs in a child process started with --expose-gc.
 */
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import tls from 'node:tls'
import { parseArgs } from 'node:util'
import { createDevPki } from '../src/dev/pki.js'
import { memoryKiB } from './lib/procs.js'

const { values } = parseArgs({ options: { connections: { type: 'string', default: '1000' }, gc: { type: 'string', default: 'full' } } })
// full: a major GC (what this floor has always been read after); last-resort: V8's collection of all
// available garbage, which also gives back grown semi-spaces (as bench/figures.ts --memory-gc last-resort).
const flavor = values.gc === 'last-resort' ? 'last-resort' : 'regular'
const n = Number(values.connections)
const pki = await createDevPki(mkdtempSync(path.join(os.tmpdir(), 'pgw-tlsmem-')))
const server = `
const tls = require('node:tls'), fs = require('node:fs'); const socks = []
const s = tls.createServer({ cert: fs.readFileSync(${JSON.stringify(pki.serverCert)}), key: fs.readFileSync(${JSON.stringify(pki.serverKey)}), minVersion: 'TLSv1.2' }, (c) => { socks.push(c); c.on('error', () => {}) })
s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'))
process.stdin.on('data', () => { global.gc({ type: 'major', execution: 'sync', flavor: ${JSON.stringify(flavor)} }); process.stdout.write(JSON.stringify({ open: socks.length }) + '\\n') })
`
const child = spawn(process.execPath, ['--expose-gc', '-e', server], { stdio: ['pipe', 'pipe', 'inherit'] })
const lines: string[] = []
let pending: ((l: string) => void) | null = null
let buf = ''
child.stdout!.on('data', (d: Buffer) => {
  buf += d.toString()
  for (let i; (i = buf.indexOf('\n')) >= 0; ) {
    const l = buf.slice(0, i)
    buf = buf.slice(i + 1)
    if (pending) {
      const p = pending
      pending = null
      p(l)
    } else lines.push(l)
  }
})
const next = () => new Promise<string>((r) => (lines.length > 0 ? r(lines.shift()!) : (pending = r)))
const port = Number(await next())
const measure = async () => {
  await new Promise((r) => setTimeout(r, 500))
  child.stdin!.write('\n')
  const { open } = JSON.parse(await next()) as { open: number }
  // Read as bench/figures.ts reads it: /proc, 1.5 s after the GC (pages it gives back are unmapped meanwhile).
  await new Promise((r) => setTimeout(r, 1500))
  return { open, rss: memoryKiB(child.pid!)!.rss * 1024 }
}
const before = await measure()
const clients: tls.TLSSocket[] = []
for (let i = 0; i < n; i++) {
  await new Promise<void>((r) => {
    const c = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => r())
    c.on('error', () => undefined)
    clients.push(c)
  })
}
const after = await measure()
console.log(`${after.open} idle TLS connections: RSS ${(before.rss / 2 ** 20).toFixed(1)} MiB -> ${(after.rss / 2 ** 20).toFixed(1)} MiB = ${((after.rss - before.rss) / 1024 / n).toFixed(1)} KiB per connection (after a ${values.gc} GC)`)
for (const c of clients) c.destroy()
child.kill()
