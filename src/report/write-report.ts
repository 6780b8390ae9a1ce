/** Write a report's files into its directory: report.json and report.html (the CSV files are written while the log is read). */
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { buildReport, type ReportInput } from './build-report.js'
import { renderHtml } from './html.js'
import type { ReportJson } from './report-json.js'

export async function writeReport(input: ReportInput): Promise<ReportJson> {
  mkdirSync(input.outDir, { recursive: true })
  const report = await buildReport(input)
  writeFileSync(path.join(input.outDir, 'report.json'), JSON.stringify(report, null, 2) + '\n')
  writeFileSync(path.join(input.outDir, 'report.html'), renderHtml(report))
  return report
}
