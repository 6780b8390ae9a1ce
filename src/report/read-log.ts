/**
 * Read an audit log for the report in one pass: `pgwitness verify`'s chain
 * and checkpoint check (verifyChain) runs on a second core
 * (verify-in-worker.ts) and hands each line over, in order, as it checks it;
 * the line is parsed here. From the first problem on, the rest of the log is
 * still read — a broken log still gets a report — but its records are marked
 * as not intact.
 */
import type { KeyObject } from 'node:crypto'
import { listLogFiles } from '../ledger/log-files.js'
import type { AuditRecord } from '../evidence/types.js'
import type { VerifySummary } from '../ledger/verify.js'
import { verifyInWorker } from './verify-in-worker.js'

export interface ReadResult {
  files: string[]
  verify: VerifySummary
  /** Lines past the first problem that are not a record (not JSON, no type or time). */
  unreadableLines: number
  /** Records handed over that are past the first problem. */
  unverifiedRecords: number
}

/**
 * One file given: it and its rotated files, in chain order (as the proxy
 * names them). Several: as given, in that order.
 */
export function logFilesFor(paths: readonly string[]): string[] {
  if (paths.length !== 1) return [...paths]
  const listed = listLogFiles(paths[0]!).map((f) => f.path)
  return listed.length > 1 && listed.at(-1) === paths[0] ? listed : [...paths]
}

export async function readLog(
  paths: readonly string[],
  publicKeys: ReadonlyMap<string, KeyObject> | null,
  onRecord: (rec: AuditRecord, intact: boolean) => void,
): Promise<ReadResult> {
  const files = logFilesFor(paths)
  let unreadableLines = 0
  let unverifiedRecords = 0
  const onLine = (buf: Buffer, start: number, end: number, intact: boolean) => {
    let rec: AuditRecord
    try {
      rec = JSON.parse(buf.toString('utf8', start, end)) as AuditRecord
    } catch {
      unreadableLines++
      return
    }
    if (!intact) {
      if (rec === null || typeof rec !== 'object' || typeof rec.type !== 'string' || typeof rec.time !== 'string' || typeof rec.chain?.seq !== 'number') {
        unreadableLines++
        return
      }
      unverifiedRecords++
    }
    onRecord(rec, intact)
  }
  const verify = await verifyInWorker(files, publicKeys, onLine)
  return { files, verify, unreadableLines, unverifiedRecords }
}
