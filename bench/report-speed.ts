/**
 * How fast `pgwitness report` reads, verifies and reports a large log, and
 * its peak memory:
 *
 *   npm run build && npx tsx bench/report-speed.ts --file LOG --public-key KEY.pub.jwk [--out DIR]
 *
 * LOG comes from bench/report-log.ts. Runs `node dist/cli.js report` under
 * /usr/bin/time -v (the built CLI, as the SOC runs it) and prints records/s
 * by wall clock and by CPU time (user + system: steadier when other work
 * shares the machine), maximum RSS, and the load average before and after.
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'

const { values } = parseArgs({ options: { file: { type: 'string' }, 'public-key': { type: 'string' }, out: { type: 'string' } } })
if (!values.file) {
  console.error('usage: npx tsx bench/report-speed.ts --file LOG [--public-key KEY.pub.jwk] [--out DIR]')
  process.exit(2)
}
const out = values.out ?? mkdtempSync(path.join(os.tmpdir(), 'pgw-report-speed-'))
const cli = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'dist', 'cli.js')
const args = ['-v', process.execPath, cli, 'report', '--out', out, '--sensitive', 'pii.*', ...(values['public-key'] ? ['--public-key', values['public-key']] : []), values.file]
const load0 = os.loadavg().map((l) => l.toFixed(1)).join(' ')
const r = spawnSync('/usr/bin/time', args, { encoding: 'utf8', maxBuffer: 1 << 26 })
const load1 = os.loadavg().map((l) => l.toFixed(1)).join(' ')
const field = (name: string) => {
  const m = new RegExp(`${name}: (.*)`).exec(r.stderr)
  return m ? m[1]!.trim() : '?'
}
const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)').split(':').reduce((a, x) => a * 60 + Number(x), 0)
const cpu = Number(field('User time \\(seconds\\)')) + Number(field('System time \\(seconds\\)'))
const rssMiB = Number(field('Maximum resident set size \\(kbytes\\)')) / 1024
const report = JSON.parse(readFileSync(path.join(out, 'report.json'), 'utf8')) as { integrity: { verdict: string; records_verified: number } }
const n = report.integrity.records_verified
const fmt = (x: number) => Math.round(x).toLocaleString('en')
console.log((r.stdout + r.stderr).split('\n').filter((l) => l.startsWith('report written')).join('\n'))
console.log(`${values.file}: ${(statSync(values.file).size / 1e9).toFixed(2)} GB, ${fmt(n)} records, verdict ${report.integrity.verdict}`)
console.log(`wall ${wall.toFixed(1)} s = ${fmt(n / wall)} records/s; CPU ${cpu.toFixed(1)} s = ${((cpu / n) * 1e6).toFixed(1)} µs/record = ${fmt(n / cpu)} records per CPU-second; max RSS ${rssMiB.toFixed(0)} MiB`)
console.log(`on ${os.cpus()[0]?.model ?? '?'} ×${os.cpus().length}, node ${process.version}; load average before ${load0}, after ${load1}`)
