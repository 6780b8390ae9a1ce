/**
 * The floors under `pgwitness report`'s speed, measured on the same log in
 * the same run (so machine load affects them alike): a bare line reader, a
 * bare SHA-256 of every line, JSON.parse of every line, a bare JavaScript
 * walk over every byte (one table lookup per byte: what any byte scanner in
 * JavaScript pays at least) and verify's canonical-form scanner alone (each
 * on one core, in this process); the least any verifying report must do — read every line
 * and SHA-256 it — on every core at once, each core a byte range of the file
 * (worker threads); and `pgwitness verify` alone (the built CLI).
 *
 *   npm run build && npx tsx bench/report-floors.ts --file LOG [--public-key KEY.pub.jwk]
 *
 * Compare with bench/report-speed.ts on the same LOG.
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import { closeSync, createReadStream, fstatSync, openSync, readSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { CanonicalLineScanner } from '../src/ledger/canonical-scan.js'

const { values } = parseArgs({ options: { file: { type: 'string' }, 'public-key': { type: 'string' } } })
if (!values.file) {
  console.error('usage: npx tsx bench/report-floors.ts --file LOG [--public-key KEY.pub.jwk]')
  process.exit(2)
}
const file = values.file

/** Read the file in 4 MiB chunks and call `line` for each complete line; returns the number of lines. */
async function eachLine(line: (buf: Buffer, start: number, end: number) => void): Promise<number> {
  let n = 0
  let carry = Buffer.alloc(0)
  for await (const chunk of createReadStream(file, { highWaterMark: 4 * 1024 * 1024 }) as AsyncIterable<Buffer>) {
    const buf = carry.length > 0 ? Buffer.concat([carry, chunk]) : chunk
    let start = 0
    for (let end = buf.indexOf(10, start); end >= 0; end = buf.indexOf(10, start)) {
      line(buf, start, end)
      n++
      start = end + 1
    }
    carry = Buffer.from(buf.subarray(start))
  }
  return n
}

const fmt = (x: number) => Math.round(x).toLocaleString('en')
async function floor(name: string, line: (buf: Buffer, start: number, end: number) => void): Promise<void> {
  const t0 = process.hrtime.bigint()
  const n = await eachLine(line)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`${name.padEnd(34)} ${s.toFixed(1).padStart(6)} s  ${fmt(n / s).padStart(10)} lines/s  (one core)`)
}

console.log(`${file}: load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
await floor('bare line reader', () => {})
await floor('bare SHA-256 of every line', (buf, start, end) => void crypto.hash('sha256', buf.subarray(start, end), 'hex'))
await floor('JSON.parse of every line', (buf, start, end) => void JSON.parse(buf.toString('utf8', start, end)))
const BYTE_CLASS = new Uint8Array(256)
BYTE_CLASS[0x22] = 1
let walked = 0
await floor('JavaScript walk over every byte', (buf, start, end) => {
  let x = 0
  for (let i = start; i < end; i++) x += BYTE_CLASS[buf[i]!]!
  walked += x
})
if (walked < 0) console.log(walked)
for (const [label, scanner] of [
  ['canonical scanner (verify) alone: WebAssembly, TypeScript for what it leaves', new CanonicalLineScanner()],
  ['canonical scanner (verify) alone: TypeScript only', new CanonicalLineScanner(false)],
] as const) {
  let refused = 0
  await floor(label, (buf, start, end) => {
    if (scanner.scan(buf, start, end) === null) refused++
  })
  if (refused > 0) console.log(`  (the scanner refused ${refused} line(s): verify checks those the long way)`)
}
/**
 * Read [from, to) of the file with readSync into one reused buffer; SHA-256
 * each line that starts in the range (a line crossing `to` is finished; one
 * crossing `from` belongs to the range before). Runs in a worker thread.
 */
const RANGE_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { openSync, readSync, closeSync } = require('node:fs')
const crypto = require('node:crypto')
const { file, from, to, hash } = workerData
const fd = openSync(file, 'r')
const buf = Buffer.allocUnsafe(8 * 1024 * 1024)
let pos = from, fill = 0, start = 0, lines = 0, skipFirst = from > 0
for (;;) {
  if (start > 0) { buf.copy(buf, 0, start, fill); fill -= start; start = 0 }
  const n = readSync(fd, buf, fill, buf.length - fill, pos)
  pos += n; fill += n
  let end
  while ((end = buf.indexOf(10, start)) >= 0 && end < fill) {
    const lineStart = pos - fill + start
    if (skipFirst) skipFirst = false
    else if (lineStart < to) { if (hash) crypto.hash('sha256', buf.subarray(start, end), 'hex'); lines++ }
    start = end + 1
    if (lineStart >= to) break
  }
  if (n === 0 || pos - fill + start >= to) break
}
closeSync(fd)
parentPort.postMessage(lines)
`

async function onEveryCore(name: string, hash: boolean): Promise<void> {
  const cores = os.availableParallelism()
  const fd = openSync(file, 'r')
  const size = fstatSync(fd).size
  closeSync(fd)
  const t0 = process.hrtime.bigint()
  const counts = await Promise.all(Array.from({ length: cores }, (_, i) => new Promise<number>((resolve, reject) => {
    // A range starting mid-line skips to the next line; range 0 starts at a line.
    const from = i === 0 ? 0 : Math.floor((size * i) / cores) - 1
    const to = Math.floor((size * (i + 1)) / cores)
    const w = new Worker(RANGE_WORKER, { eval: true, workerData: { file, from, to, hash } })
    w.once('message', resolve)
    w.once('error', reject)
  })))
  const n = counts.reduce((a, b) => a + b, 0)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`${name.padEnd(34)} ${s.toFixed(1).padStart(6)} s  ${fmt(n / s).padStart(10)} lines/s  (${cores} cores, ${n} lines)`)
}

/** Single core, the same reader the range workers use. */
function readSyncLines(hash: boolean): number {
  const fd = openSync(file, 'r')
  const buf = Buffer.allocUnsafe(8 * 1024 * 1024)
  let fill = 0
  let n = 0
  for (;;) {
    const got = readSync(fd, buf, fill, buf.length - fill, null)
    fill += got
    let start = 0
    for (let end = buf.indexOf(10, start); end >= 0 && end < fill; end = buf.indexOf(10, start)) {
      if (hash) crypto.hash('sha256', buf.subarray(start, end), 'hex')
      n++
      start = end + 1
    }
    buf.copy(buf, 0, start, fill)
    fill -= start
    if (got === 0) break
  }
  closeSync(fd)
  return n
}
for (const hash of [false, true]) {
  const t0 = process.hrtime.bigint()
  const n = readSyncLines(hash)
  const s = Number(process.hrtime.bigint() - t0) / 1e9
  console.log(`${(hash ? 'readSync + SHA-256 of every line' : 'readSync line reader').padEnd(34)} ${s.toFixed(1).padStart(6)} s  ${fmt(n / s).padStart(10)} lines/s  (one core)`)
}
await onEveryCore('read lines, every core', false)
await onEveryCore('read + SHA-256 lines, every core', true)

const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'cli.js')
const t0 = process.hrtime.bigint()
const r = spawnSync(process.execPath, [cli, 'verify', ...(values['public-key'] ? ['--public-key', values['public-key']] : []), file], { encoding: 'utf8' })
const s = Number(process.hrtime.bigint() - t0) / 1e9
const records = Number(/(\d+) record\(s\)/.exec(r.stdout + r.stderr)?.[1] ?? NaN)
console.log(`${'pgwitness verify alone'.padEnd(34)} ${s.toFixed(1).padStart(6)} s  ${fmt(records / s).padStart(10)} records/s (exit ${r.status})`)
console.log(`load average after ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
