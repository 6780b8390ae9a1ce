/**
 * Summarize a V8 .cpuprofile (from `--proxy-node-args="--cpu-prof --cpu-prof-dir=DIR"`):
 * self time by function and by module, to see what limits the proxy.
 *   npx tsx bench/profile-summary.ts FILE.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parseArgs } from 'node:util'

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface Node { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number }

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' } } })
const file = positionals[0]
if (!file) {
  console.error('usage: npx tsx bench/profile-summary.ts FILE.cpuprofile [--top N]')
  process.exit(1)
}
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile
const byId = new Map(p.nodes.map((n) => [n.id, n]))
const self = new Map<number, number>()
p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)))
const totalUs = [...self.values()].reduce((a, b) => a + b, 0)

function moduleOf(url: string, fn: string): string {
  if (!url) return fn.startsWith('(') ? fn : '(native/builtin)'
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/')
  const nm = url.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  const dist = url.indexOf('/dist/')
  if (dist >= 0) return 'pgwitness ' + url.slice(dist + 1)
  return path.basename(url)
}

const fnAgg = new Map<string, number>()
const modAgg = new Map<string, number>()
for (const [id, us] of self) {
  const n = byId.get(id)!
  const cf = n.callFrame
  const fkey = `${cf.functionName || '(anonymous)'} ${cf.url ? `${cf.url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/')}:${cf.lineNumber + 1}` : ''}`.trim()
  fnAgg.set(fkey, (fnAgg.get(fkey) ?? 0) + us)
  const m = moduleOf(cf.url, cf.functionName)
  modAgg.set(m, (modAgg.get(m) ?? 0) + us)
}
const top = Number(values.top)

const busyUs = totalUs - (modAgg.get('(idle)') ?? 0)
console.log(`profile ${path.basename(file)}: ${(totalUs / 1e6).toFixed(2)} s sampled, ${(busyUs / 1e6).toFixed(2)} s not idle\n`)
console.log('| self time | share of non-idle | module |\n|---:|---:|---|')
for (const [m, us] of [...modAgg].filter(([m]) => m !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`| ${(us / 1e3).toFixed(0)} ms | ${((us / busyUs) * 100).toFixed(1)}% | ${m} |`)
console.log('\n| self time | share of non-idle | function |\n|---:|---:|---|')
for (const [f, us] of [...fnAgg].filter(([f]) => !f.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, top))
  console.log(`| ${(us / 1e3).toFixed(0)} ms | ${((us / busyUs) * 100).toFixed(1)}% | ${f.replace(/\|/g, '\\|')} |`)

