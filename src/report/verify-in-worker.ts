/**
 * Run verifyChain on a second core (verify-worker.ts) and hand each line to
 * `onLine` here, in chain order, exactly as verifyChain's own onLine would:
 * the verdict is verifyChain's, computed by the same code.
 */
import type { KeyObject } from 'node:crypto'
import { Worker } from 'node:worker_threads'
import type { LineSink, VerifySummary } from '../ledger/verify.js'
import type { WorkerMessage } from './line-batch.js'

// Built: verify-worker.js next to this file. From source (tests run under tsx), verify-worker.ts
// through tsx's loader, which a worker thread does not inherit from --import.
const FROM_SOURCE = import.meta.url.endsWith('.ts')
const WORKER_URL = new URL(FROM_SOURCE ? './verify-worker.ts' : './verify-worker.js', import.meta.url)

function startWorker(workerData: unknown): Worker {
  if (!FROM_SOURCE) return new Worker(WORKER_URL, { workerData })
  const boot = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(WORKER_URL.href)}) })`
  return new Worker(boot, { eval: true, workerData })
}

export function verifyInWorker(files: readonly string[], publicKeys: ReadonlyMap<string, KeyObject> | null, onLine: LineSink): Promise<VerifySummary> {
  const inFlight = new Int32Array(new SharedArrayBuffer(4))
  return new Promise((resolve, reject) => {
    let settled = false
    const settle = (fn: () => void) => {
      if (settled) return
      settled = true
      fn()
    }
    const worker = startWorker({ files: [...files], publicKeys, inFlight: inFlight.buffer })
    worker.on('message', (msg: WorkerMessage) => {
      if (settled) return
      try {
        if (msg.kind === 'batch') {
          const { batch } = msg
          const bytes = Buffer.from(batch.bytes)
          const ends = new Int32Array(batch.ends)
          let start = 0
          for (let i = 0; i < batch.count; i++) {
            const end = ends[i]!
            onLine(bytes, start, end, i < batch.intactLines)
            start = end
          }
          Atomics.sub(inFlight, 0, 1)
          Atomics.notify(inFlight, 0)
        } else if (msg.kind === 'done') {
          settle(() => resolve(msg.verify))
        } else {
          settle(() => reject(new Error(`verify worker: ${msg.message}`)))
        }
      } catch (err) {
        settle(() => reject(err as Error))
        void worker.terminate()
      }
    })
    worker.on('error', (err) => settle(() => reject(err)))
    worker.on('exit', (code) => settle(() => reject(new Error(`verify worker exited (${code}) before it finished`))))
  })
}
