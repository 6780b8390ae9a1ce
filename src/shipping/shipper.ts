/**
 * Drives one sink: follower → transport → cursor, forever.
 *
 * Each batch is sent until the sink acknowledges it; only then is the cursor
 * saved and the next batch read. A failed attempt is retried with
 * exponential backoff (with jitter, capped, or what the sink asked for with
 * Retry-After) — the batch is never dropped, so a sink that is down only
 * grows its lag. The shipper runs on the proxy's event loop but never sits
 * in the relay's path: the proxy only appends to the log file, and the
 * shipper reads that file on its own schedule.
 */
import type { Logger } from 'pino'
import type { AuditSinkLag } from '../metrics/registry.js'
import { epochMs } from './ocsf.js'
import type { CursorStore } from './cursor.js'
import type { AuditLogFollower, LogPosition } from './follower.js'
import { errorText, SinkError, type FollowedRecord, type SinkTransport } from './types.js'

export interface BackoffOptions {
  /** First retry delay. */
  baseMs: number
  /** Largest delay. */
  capMs: number
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 250, capMs: 30_000 }

/** Delay before retry number `attempt` (1-based): base·2^(attempt-1), capped, with ±25 % jitter so many shippers do not retry in step. */
export function backoffDelay(attempt: number, o: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const exp = Math.min(o.capMs, o.baseMs * 2 ** Math.min(attempt - 1, 30))
  return Math.max(0, Math.round(Math.min(o.capMs, exp * (0.75 + random() * 0.5))))
}

/** The longest wait honoured from a Retry-After (a sink asking for more is retried after this). */
const MAX_RETRY_AFTER_MS = 10 * 60_000

export interface ShipperOptions {
  name: string
  follower: AuditLogFollower
  cursor: CursorStore
  transport: SinkTransport
  log: Logger
  batchSize: number
  /** Rough byte limit of one batch read from the log (the transport may split further). */
  batchBytes: number
  /** The log's head seq (last record appended); default: the highest seq the follower has read. */
  headSeq?: () => number
  backoff?: BackoffOptions
  /** Called for every failed attempt (delivery error counter). */
  onError?: () => void
}

export class Shipper implements AuditSinkLag {
  readonly name: string
  private position: LogPosition = { seq: 0, hash: '' }
  private deliveredTotal = 0
  private failures = 0
  /** Time (ms) of the oldest record read and not yet delivered; null when none is waiting. */
  private oldestPending: number | null = null
  private readonly abort = new AbortController()
  private loop: Promise<void> | null = null
  private running = false
  private lastError: string | null = null

  constructor(private readonly o: ShipperOptions) {
    this.name = o.name
  }

  /** Load the cursor, position the follower, and start delivering. */
  async start(): Promise<void> {
    try {
      this.position = await this.o.cursor.load()
    } catch (err) {
      // An unreadable cursor must not lose records: deliver again from the start (duplicates are allowed).
      this.o.log.error({ sink: this.name, err: errorText(err) }, 'audit sink cursor unreadable; delivering again from the start of the log')
      this.position = { seq: 0, hash: '' }
    }
    await this.o.follower.start(this.position)
    this.o.log.info({ sink: this.name, to: this.o.transport.describe, from_seq: this.position.seq + 1 }, 'audit sink shipping')
    this.running = true
    this.loop = this.run().finally(() => {
      this.running = false
    })
  }

  /** Records delivered (acknowledged) since start. */
  delivered(): number {
    return this.deliveredTotal
  }

  /** Failed delivery attempts since start. */
  get errorCount(): number {
    return this.failures
  }

  /** The last record delivered (the persisted cursor). */
  get cursor(): LogPosition {
    return this.position
  }

  /** Why the last attempt failed; null once a delivery succeeded again. */
  get error(): string | null {
    return this.lastError
  }

  private head(): number {
    return Math.max(this.o.headSeq?.() ?? 0, this.o.follower.lastReadSeq)
  }

  lagRecords(): number {
    return Math.max(0, this.head() - this.position.seq)
  }

  lagSeconds(): number {
    return this.oldestPending === null ? 0 : Math.max(0, (Date.now() - this.oldestPending) / 1000)
  }

  /**
   * Stop: go on delivering what is in the log for at most `drainMs` (the
   * final records of a shutdown included), then abort the attempt in flight
   * and close. The cursor stays at the last acknowledged batch; the next
   * start resumes there.
   */
  async stop(drainMs: number): Promise<void> {
    const deadline = Date.now() + drainMs
    // Without a head from the writer, read it from the end of the log file.
    const target = this.o.headSeq ? this.head() : Math.max(this.head(), await this.o.follower.probeHead())
    while (this.running && this.position.seq < target && Date.now() < deadline && !this.abort.signal.aborted) {
      await sleep(20)
    }
    if (this.position.seq < target) {
      this.o.log.warn({ sink: this.name, delivered_seq: this.position.seq, head_seq: target },
        'audit sink not caught up at shutdown; it resumes from its cursor at the next start')
    }
    this.abort.abort()
    await this.loop
    await this.o.follower.close()
    await this.o.transport.close().catch((err: unknown) => this.o.log.warn({ sink: this.name, err: errorText(err) }, 'closing audit sink'))
  }

  private async run(): Promise<void> {
    const signal = this.abort.signal
    try {
      while (!signal.aborted) {
        const batch = await this.o.follower.next({ maxRecords: this.o.batchSize, maxBytes: this.o.batchBytes, signal })
        if (batch.length === 0) continue
        this.oldestPending = epochMs(batch[0]!.record.time)
        await this.deliver(batch, signal)
        // Let the proxy's own work run between batches.
        await new Promise<void>((r) => setImmediate(r))
      }
    } catch (err) {
      // Only a bug or an unreadable log gets here; say so loudly, lag metrics will show it too.
      this.o.log.error({ sink: this.name, err: errorText(err) }, 'audit sink shipper stopped')
    }
  }

  /** Send until acknowledged (or shutdown); then persist the cursor. */
  private async deliver(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void> {
    let attempt = 0
    while (!signal.aborted) {
      try {
        await this.o.transport.send(batch, signal)
      } catch (err) {
        if (signal.aborted) return
        attempt++
        this.failures++
        this.o.onError?.()
        const retryAfter = err instanceof SinkError ? err.retryAfterMs : null
        const delay = retryAfter !== null ? Math.min(MAX_RETRY_AFTER_MS, retryAfter) : backoffDelay(attempt, this.o.backoff)
        this.lastError = errorText(err)
        const fields = { sink: this.name, attempt, retry_in_ms: delay, records: batch.length, first_seq: batch[0]!.seq, err: this.lastError }
        // The first failures and then every tenth, so a long outage does not flood the log.
        if (attempt <= 3 || attempt % 10 === 0) {
          if (err instanceof SinkError && err.refused) this.o.log.error(fields, 'audit sink refused the records; retrying (check the sink configuration)')
          else this.o.log.warn(fields, 'audit sink delivery failed; retrying')
        }
        await sleep(delay, signal)
        continue
      }
      const last = batch[batch.length - 1]!
      this.position = { seq: last.seq, hash: last.record.chain.hash }
      this.deliveredTotal += batch.length
      this.oldestPending = null
      if (attempt > 0) {
        this.o.log.info({ sink: this.name, attempts: attempt + 1, seq: last.seq }, 'audit sink delivering again')
        this.lastError = null
      }
      await this.saveCursor()
      return
    }
  }

  private async saveCursor(): Promise<void> {
    try {
      await this.o.cursor.save(this.position)
    } catch (err) {
      // Delivery went on; a stale cursor only means re-sending more after a restart.
      this.o.log.error({ sink: this.name, path: this.o.cursor.path, err: errorText(err) }, 'cannot save the audit sink cursor')
    }
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const done = () => {
      clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    const t = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
  })
}
