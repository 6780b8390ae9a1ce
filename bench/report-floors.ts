/**
 * The floors under `pgwitness report`'s speed, measured on the same log in
 * the same run (so machine load affects them alike): a bare line reader, a
 * bare SHA-256 of every line, JSON.parse of every line (each on one core, in
 * this process), and `pgwitness verify` alone (the built CLI).
 *
 *   npm run build && npx tsx bench/report-floors.ts --file LOG [--public-key KEY.pub.jwk]
 *
 * Compare with bench/report-speed.ts on the same LOG.
 */
import { spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

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
const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'cli.js')
const t0 = process.hrtime.bigint()
const r = spawnSync(process.execPath, [cli, 'verify', ...(values['public-key'] ? ['--public-key', values['public-key']] : []), file], { encoding: 'utf8' })
const s = Number(process.hrtime.bigint() - t0) / 1e9
const records = Number(/(\d+) record\(s\)/.exec(r.stdout + r.stderr)?.[1] ?? NaN)
console.log(`${'pgwitness verify alone'.padEnd(34)} ${s.toFixed(1).padStart(6)} s  ${fmt(records / s).padStart(10)} records/s (exit ${r.status})`)
console.log(`load average after ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`)
