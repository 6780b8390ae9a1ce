/**
 * After a crash in strict mode: which statements were forwarded to
 * PostgreSQL (their intents are in the journal) but have no record in the
 * audit log. Those are appended to the log as they stood when forwarded,
 * `outcome.status: unknown` (see intent-journal.ts).
 */
import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import type { StatementIntent } from './intent-journal.js'
import { listLogFiles } from './log-files.js'

/** The intents among `intents` whose record id is nowhere in the log at `logPath` after their afterSeq. */
export async function unfinishedStatements(logPath: string, intents: readonly StatementIntent[]): Promise<StatementIntent[]> {
  if (intents.length === 0) return []
  const want = new Map(intents.map((i) => [i.id, i]))
  const from = Math.min(...intents.map((i) => i.afterSeq)) + 1
  const files = listLogFiles(logPath)
  // Start with the last rotated file that begins at or before `from` (earlier files cannot hold the records).
  let start = 0
  files.forEach((f, i) => {
    if (f.firstSeq !== null && f.firstSeq <= from) start = i
  })
  for (const f of files.slice(start)) {
    const lines = createInterface({ input: createReadStream(f.path, { encoding: 'utf8' }), crlfDelay: Infinity })
    for await (const line of lines) {
      // Cheap filter first: only lines naming a wanted id are parsed.
      const at = line.indexOf('"id":"')
      if (at < 0) continue
      let rec: { id?: unknown; chain?: { seq?: unknown } }
      try {
        rec = JSON.parse(line) as typeof rec
      } catch {
        continue // a torn last line: FileAuditSink cuts it off when it opens the log
      }
      if (typeof rec.id === 'string' && want.has(rec.id)) {
        want.delete(rec.id)
        if (want.size === 0) {
          lines.close()
          return []
        }
      }
    }
  }
  return [...want.values()]
}
