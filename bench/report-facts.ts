/**
 * Could `pgwitness report` reach 300,000 records/s on this machine if its
 * sections were fed fields found by the canonical scanner instead of
 * JSON.parse? A prototype of that design, measured, not the report:
 * every line is checked and its fields located in one pass
 * (WasmLineScanner.scanFacts), SHA-256'd and chained as verify does, and fed
 * to stand-ins for the report's heaviest sections, reading only the bytes
 * they need: an identity inventory and access matrix (identity × role ×
 * database, statements by class), per-session timelines (count, first and
 * last time), a bulk-read finding, and every statement as a CSV row written
 * to a file. It runs on one core, then on every core (worker threads, each
 * a byte range of the file, as a real report would with mergeable sections).
 *
 *   npx tsx bench/report-facts.ts --file LOG [--csv-dir DIR]
 *
 * It also prints, on one core, what each stage adds: reading and the scan
 * alone, then the chain (SHA-256), then the sections, then the CSV rows.
 *
 * Lines the scanner does not accept are counted (the report would take the
 * long way for them) and not fed.
 */
import crypto from 'node:crypto'
import { closeSync, fstatSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import { wasmLineScanner } from '../src/ledger/wasm/canonical-scan-wasm.js'

interface RangeResult {
  records: number
  fed: number
  refused: number
  brokenLinks: number
  identities: number
  matrixCells: number
  sessions: number
  bulkReads: number
  csvBytes: number
  seconds: number
}

const HASH_MEMBER = 8 + 64 + 2
const CHUNK = 8 * 1024 * 1024

/** Check, hash and feed every line that starts in [from, to) of `file`. */
type Stage = 'scan' | 'chain' | 'sections' | 'all'
const STAGES: Stage[] = ['scan', 'chain', 'sections', 'all']

function runRange(file: string, from: number, to: number, csvFile: string, stage: Stage = 'all'): RangeResult {
  const t0 = process.hrtime.bigint()
  const scanner = wasmLineScanner()
  if (scanner === null) throw new Error('no WebAssembly')
  const fd = openSync(file, 'r')
  const csv = openSync(csvFile, 'w')
  let buf = Buffer.allocUnsafe(CHUNK)
  const scratch = Buffer.allocUnsafe(1 << 20)
  let filled = 0
  // A range after the first reads from the byte before it: the line that byte ends (or crosses into the range) belongs to the range before.
  let pos = from > 0 ? from - 1 : 0
  let startsAt = pos
  const r: RangeResult = { records: 0, fed: 0, refused: 0, brokenLinks: 0, identities: 0, matrixCells: 0, sessions: 0, bulkReads: 0, csvBytes: 0, seconds: 0 }
  // Stand-ins for the sections.
  const identityOfSession = new Map<string, string>()
  const inventory = new Map<string, { first: number; last: number; sessions: number }>()
  const matrix = new Map<string, Map<string, number>>()
  const timelines = new Map<string, { count: number; first: string; last: string }>()
  const bulk: string[] = []
  let hashHex = Buffer.alloc(64)
  let prevHex = Buffer.alloc(64)
  let havePrev = false
  // The statements CSV, built as bytes: cells copied from the line.
  let out = Buffer.allocUnsafe(2 << 20)
  let o = 0
  const whoCell = new Map<string, Buffer>()
  /** Copy the string value in `slot` without its quotes (ASCII without CSV specials: times, ids, words). */
  const plain = (b: Buffer, s: number, slot: number) => {
    const vs = f[2 * slot]!
    const ve = f[2 * slot + 1]!
    if (ve === 0) return
    o += b[s + vs] === 0x22 ? b.copy(out, o, s + vs + 1, s + ve - 1) : b.copy(out, o, s + vs, s + ve)
  }
  /** The value in `slot` as a quoted CSV cell: JSON's `"` doubled; a string with escapes is decoded first. */
  const quoted = (b: Buffer, s: number, slot: number, decode: boolean) => {
    let vs = s + f[2 * slot]!
    let ve = s + f[2 * slot + 1]!
    if (ve === s) return
    if (decode && b[vs] === 0x22) {
      let escaped = false
      for (let i = vs + 1; i < ve - 1; i++) if (b[i] === 0x5c) escaped = true
      if (escaped) {
        o += out.write(csvCell(JSON.parse(b.toString('utf8', vs, ve)) as string), o, 'utf8')
        return
      }
      vs++
      ve--
    }
    out[o++] = 0x22
    for (let i = vs; i < ve; i++) {
      const c = b[i]!
      out[o++] = c
      if (c === 0x22) out[o++] = 0x22
    }
    out[o++] = 0x22
  }
  const f = scanner.facts
  const text = (b: Buffer, s: number, slot: number): string | null => {
    const vs = f[2 * slot]!
    const ve = f[2 * slot + 1]!
    if (ve === 0) return null
    if (b[s + vs] !== 0x22) return b.toString('latin1', s + vs, s + ve) // null, a number, an array
    // A string: its bytes, unless it has escapes (then JSON decides).
    const raw = b.toString('utf8', s + vs + 1, s + ve - 1)
    return raw.includes('\\') ? (JSON.parse(b.toString('utf8', s + vs, s + ve)) as string) : raw
  }
  const csvCell = (v: string | null) => (v === null ? '' : /[",\n\r]/.test(v) ? `"${v.replaceAll('"', '""')}"` : v)

  // A line belongs to the range it starts in: skip the one crossing `from`.
  let skipFirst = from > 0
  for (;;) {
    const want = buf.length - filled
    const n = readSync(fd, buf, filled, want, pos)
    pos += n
    filled += n
    let s = 0
    for (;;) {
      const e = buf.indexOf(10, s)
      if (e < 0 || e >= filled) break
      if (skipFirst) {
        skipFirst = false
        s = e + 1
        continue
      }
      if (startsAt + s >= to) break
      r.records++
      if (!scanner.scanFacts(buf, s, e)) {
        r.refused++
        s = e + 1
        continue
      }
      const last = scanner.last
      if (stage === 'scan') {
        s = e + 1
        continue
      }
      // The chain: SHA-256 of the line without its hash member, and the link to the line before.
      const cut = s + last.chainAt + 1
      const len = e - s - HASH_MEMBER
      buf.copy(scratch, 0, s, cut)
      buf.copy(scratch, cut - s, cut + HASH_MEMBER, e)
      // Compared as bytes: no string per hash.
      hashHex.write(crypto.hash('sha256', scratch.subarray(0, len), 'hex'), 0, 64, 'latin1')
      if (buf.compare(hashHex, 0, 64, s + last.hashAt, s + last.hashAt + 64) !== 0) r.brokenLinks++
      if (havePrev && buf.compare(prevHex, 0, 64, s + last.prevAt, s + last.prevAt + 64) !== 0) r.brokenLinks++
      ;[hashHex, prevHex] = [prevHex, hashHex]
      havePrev = true
      if (stage === 'chain') {
        s = e + 1
        continue
      }
      // The sections.
      const typeLen = last.typeEnd - last.typeStart
      const isStatement = typeLen === 11 && buf[s + last.typeStart + 1] === 0x73 && buf[s + last.typeStart + 2] === 0x74 // "statement"
      const session = text(buf, s, 2)
      if (session === null) {
        s = e + 1
        continue
      }
      r.fed++
      const time = text(buf, s, 1)!
      let who = identityOfSession.get(session)
      if (who === undefined) {
        who = `${text(buf, s, 3)} (${text(buf, s, 4)})`
        identityOfSession.set(session, who)
        const inv = inventory.get(who)
        if (inv === undefined) inventory.set(who, { first: r.fed, last: r.fed, sessions: 1 })
        else inv.sessions++
      }
      inventory.get(who)!.last = r.fed
      if (!isStatement) {
        s = e + 1
        continue
      }
      const cellKey = `${who}\u0000${text(buf, s, 7)}\u0000${text(buf, s, 8)}`
      let cell = matrix.get(cellKey)
      if (cell === undefined) matrix.set(cellKey, (cell = new Map()))
      const classes = text(buf, s, 10)!
      cell.set(classes, (cell.get(classes) ?? 0) + 1)
      const tl = timelines.get(session)
      if (tl === undefined) timelines.set(session, { count: 1, first: time, last: time })
      else {
        tl.count++
        tl.last = time
      }
      const rows = text(buf, s, 14)
      if (rows !== null && rows !== 'null' && Number(rows) > 10_000 && bulk.length < 1000) bulk.push(session)
      if (stage === 'sections') {
        s = e + 1
        continue
      }
      const need = 2 * (e - s) + 1024
      if (out.length - o < need) {
        if (o > 0) r.csvBytes += writeSync(csv, out, 0, o)
        o = 0
        if (out.length < need) out = Buffer.allocUnsafe(need)
      }
      plain(buf, s, 1)
      out[o++] = 0x2c
      plain(buf, s, 2)
      out[o++] = 0x2c
      let whoBytes = whoCell.get(who)
      if (whoBytes === undefined) whoCell.set(who, (whoBytes = Buffer.from(csvCell(who))))
      o += whoBytes.copy(out, o)
      out[o++] = 0x2c
      plain(buf, s, 9)
      out[o++] = 0x2c
      quoted(buf, s, 10, false)
      out[o++] = 0x2c
      plain(buf, s, 13)
      out[o++] = 0x2c
      plain(buf, s, 14)
      out[o++] = 0x2c
      plain(buf, s, 15)
      out[o++] = 0x2c
      quoted(buf, s, 12, true)
      out[o++] = 0x0a
      if (o > 1 << 20) {
        r.csvBytes += writeSync(csv, out, 0, o)
        o = 0
      }
      s = e + 1
    }
    // Keep the unfinished line; stop at the end of the file or of the range.
    if (n === 0 || startsAt + s >= to) break
    buf.copy(buf, 0, s, filled)
    filled -= s
    startsAt += s
    if (filled === buf.length) {
      const bigger = Buffer.allocUnsafe(buf.length * 2)
      buf.copy(bigger, 0, 0, filled)
      buf = bigger
    }
  }
  r.csvBytes += writeSync(csv, out, 0, o)
  closeSync(csv)
  closeSync(fd)
  r.identities = inventory.size
  r.matrixCells = matrix.size
  r.sessions = timelines.size
  r.bulkReads = bulk.length
  r.seconds = Number(process.hrtime.bigint() - t0) / 1e9
  return r
}

if (!isMainThread) {
  const { file, from, to, csvFile } = workerData as { file: string; from: number; to: number; csvFile: string }
  parentPort!.postMessage(runRange(file, from, to, csvFile))
} else {
  const { values } = parseArgs({ options: { file: { type: 'string' }, 'csv-dir': { type: 'string' } } })
  if (!values.file) {
    console.error('usage: npx tsx bench/report-facts.ts --file LOG [--csv-dir DIR]')
    process.exit(2)
  }
  const file = values.file
  const dir = values['csv-dir'] ?? mkdtempSync(path.join(os.tmpdir(), 'pgw-report-facts-'))
  const size = fstatSync(openSync(file, 'r')).size
  console.log(`${file}: ${(size / 1e6).toFixed(0)} MB; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`)

  for (const stage of STAGES.slice(0, -1)) {
    const r = runRange(file, 0, size, path.join(dir, 'one-core.csv'), stage)
    console.log(`one core, up to ${stage.padEnd(8)}: ${((r.seconds * 1e6) / r.records).toFixed(2)} µs per record`)
  }
  const one = runRange(file, 0, size, path.join(dir, 'one-core.csv'))
  console.log(`one core:   ${one.records.toLocaleString('en')} records in ${one.seconds.toFixed(2)} s = ${Math.round(one.records / one.seconds).toLocaleString('en')} records/s, ${((one.seconds * 1e6) / one.records).toFixed(2)} µs each`)
  console.log(`            refused by the scanner ${one.refused}, chain problems ${one.brokenLinks}; ${one.identities} identities, ${one.matrixCells} matrix cells, ${one.sessions} sessions, ${one.bulkReads} bulk reads, statements CSV ${(one.csvBytes / 1e6).toFixed(0)} MB`)

  const cores = os.availableParallelism()
  const t0 = process.hrtime.bigint()
  const parts = await Promise.all(
    Array.from({ length: cores }, (_, i) => {
      const from = Math.floor((size * i) / cores)
      const to = Math.floor((size * (i + 1)) / cores)
      return new Promise<RangeResult>((resolve, reject) => {
        const w = new Worker(new URL('./lib/tsx-worker.mjs', import.meta.url), { workerData: { entry: import.meta.url, file, from, to, csvFile: path.join(dir, `part-${i}.csv`) } })
        w.once('message', resolve)
        w.once('error', reject)
      })
    }),
  )
  const wall = Number(process.hrtime.bigint() - t0) / 1e9
  const records = parts.reduce((n, p) => n + p.records, 0)
  console.log(`${cores} cores:    ${records.toLocaleString('en')} records in ${wall.toFixed(2)} s = ${Math.round(records / wall).toLocaleString('en')} records/s (wall, workers started included)`)
  if (!values['csv-dir']) rmSync(dir, { recursive: true, force: true })
}
