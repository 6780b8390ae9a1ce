/**
 * Re-render the Markdown table of a results file written by bench/run.ts:
 *   npx tsx bench/report.ts bench/results-<timestamp>.json [--scenario select-only/prepared/c8 ...]
 */
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { markdownTable, summarize, type RunRecord } from './lib/report.js'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { scenario: { type: 'string', multiple: true } } })
const file = positionals[0]
if (!file) {
  console.error('usage: npx tsx bench/report.ts RESULTS.json [--scenario ID ...]')
  process.exit(1)
}
const j = JSON.parse(readFileSync(file, 'utf8')) as {
  command: string
  rounds: number
  durationS: number
  elapsedS: number
  scenarios: string[]
  targets: { name: string }[]
  runs: RunRecord[]
}
const scenarios = values.scenario?.length ? values.scenario : j.scenarios
const rows = summarize(j.runs, scenarios, j.targets.map((t) => t.name))
console.log(`${j.command} — median of ${j.rounds} interleaved round(s), ${j.durationS} s each; elapsed ${(j.elapsedS / 60).toFixed(1)} min\n`)
console.log(markdownTable(rows))
