/**
 * What the verify worker (verify-worker.ts) sends the report's main thread:
 * batches of record lines in chain order, each line's bytes followed by the
 * next's, with where each ends.
 */
import type { VerifySummary } from '../ledger/verify.js'

export const BATCH_BYTES = 4 * 1024 * 1024
/** Batches queued for the main thread at most (bounds memory: MAX_IN_FLIGHT × BATCH_BYTES). */
export const MAX_IN_FLIGHT = 8

export interface LineBatch {
  /** The lines' record JSON, back to back. */
  bytes: ArrayBuffer
  /** Int32: end offset in `bytes` of each line (a line starts where the previous ended). */
  ends: ArrayBuffer
  count: number
  /** Lines [0, intactLines) are vouched for by the chain; the rest are past the first problem. */
  intactLines: number
}

export type WorkerMessage =
  | { kind: 'batch'; batch: LineBatch }
  | { kind: 'done'; verify: VerifySummary }
  | { kind: 'error'; message: string }
