/**
 * The report's second core: this worker thread runs `pgwitness verify`'s
 * own one-pass check (verifyChain: reading, the byte scanner, SHA-256,
 * checkpoints) and ships each line's record JSON to the main thread in large
 * batches, in chain order, while the main thread parses and aggregates the
 * previous batch. See read-log.ts for the other end.
 *
 * Batches are transferred (not copied) and at most MAX_IN_FLIGHT are queued:
 * the worker blocks on a shared counter when the main thread falls behind, so
 * memory stays bounded however large the log.
 */
import type { KeyObject } from 'node:crypto'
import { parentPort, workerData } from 'node:worker_threads'
import { verifyChain } from '../ledger/verify.js'
import { BATCH_BYTES, MAX_IN_FLIGHT, type LineBatch, type WorkerMessage } from './line-batch.js'
import { copyStripped, REPORT_UNUSED } from './strip-members.js'

interface VerifyWorkerData {
  files: string[]
  publicKeys: ReadonlyMap<string, KeyObject> | null
  /** Int32Array(1) over a SharedArrayBuffer: batches posted and not yet consumed. */
  inFlight: SharedArrayBuffer
}

const data = workerData as VerifyWorkerData
const port = parentPort!
const inFlight = new Int32Array(data.inFlight)

let buf = Buffer.allocUnsafeSlow(BATCH_BYTES)
let ends = new Int32Array(BATCH_BYTES / 256)
let used = 0
let count = 0
let intactLines = -1

function post(msg: WorkerMessage, transfer: ArrayBuffer[] = []): void {
  port.postMessage(msg, transfer)
}

function flush(): void {
  if (count === 0) return
  // Back-pressure: wait while the main thread has MAX_IN_FLIGHT batches queued.
  for (let n = Atomics.load(inFlight, 0); n >= MAX_IN_FLIGHT; n = Atomics.load(inFlight, 0)) Atomics.wait(inFlight, 0, n, 1000)
  Atomics.add(inFlight, 0, 1)
  const batch: LineBatch = { bytes: buf.buffer as ArrayBuffer, ends: ends.buffer as ArrayBuffer, count, intactLines: intactLines < 0 ? count : intactLines }
  post({ kind: 'batch', batch }, [batch.bytes, batch.ends])
  buf = Buffer.allocUnsafeSlow(BATCH_BYTES)
  ends = new Int32Array(BATCH_BYTES / 256)
  used = 0
  count = 0
  intactLines = -1
}

/** The line without the members the report never reads; as it is if it cannot be walked (then JSON.parse says what is wrong). */
function stripped(src: Buffer, start: number, end: number): number {
  try {
    return copyStripped(src, start, end, REPORT_UNUSED, buf, used)
  } catch {
    return used + src.copy(buf, used, start, end)
  }
}

try {
  const verify = await verifyChain(data.files, {
    publicKeys: data.publicKeys,
    // An unsigned tail is reported in the verdict (a running proxy's log always has one), not a break.
    allowUnsignedTail: true,
    readPastFailure: true,
    onLine(src, start, end, intact) {
      const len = end - start
      if (used + len > buf.length || count === ends.length) {
        flush()
        if (len > buf.length) buf = Buffer.allocUnsafeSlow(len)
      }
      // Lines stop being intact at the first problem and never become intact again.
      if (!intact && intactLines < 0) intactLines = count
      // A line the chain vouches for is canonical JSON: the members the report never reads are left out.
      used = intact ? stripped(src, start, end) : used + src.copy(buf, used, start, end)
      ends[count++] = used
    },
  })
  flush()
  post({ kind: 'done', verify })
} catch (err) {
  post({ kind: 'error', message: (err as Error).stack ?? String(err) })
}
