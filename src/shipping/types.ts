/**
 * The pieces a shipper connects: records read from the audit log, a
 * transport that delivers them to one sink, and the errors a transport
 * reports. Transports never retry on their own: the shipper retries the
 * whole batch (with backoff), so every retry starts from the persisted cursor
 * and nothing is skipped.
 */
import type { AuditRecord } from '../evidence/types.js'

/** One record of the audit log as the follower read it. */
export interface FollowedRecord {
  /** chain.seq. */
  seq: number
  /** The log line (the record's canonical JSON), without its newline. */
  line: string
  record: AuditRecord
}

/** A delivery target. */
export interface SinkTransport {
  /** For logs: where it delivers (no credentials). */
  readonly describe: string
  /**
   * Deliver the records, in order. Resolves only once the sink has them (an
   * acknowledgement where the protocol has one); rejects with a SinkError
   * otherwise. `signal` aborts an attempt (shutdown).
   */
  send(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void>
  close(): Promise<void>
}

/** A failed delivery; the shipper retries it. Messages carry no secrets. */
export class SinkError extends Error {
  override readonly name = 'SinkError'
  /** The sink asked to wait this long before the next attempt (HTTP Retry-After). */
  readonly retryAfterMs: number | null
  /**
   * The sink refused the records in a way that retrying alone will not fix
   * (e.g. HTTP 400/401/403: a configuration problem). Still retried — a
   * record is never dropped — but logged as an error.
   */
  readonly refused: boolean

  constructor(message: string, o: { retryAfterMs?: number | null; refused?: boolean; cause?: unknown } = {}) {
    super(message, o.cause !== undefined ? { cause: o.cause } : undefined)
    this.retryAfterMs = o.retryAfterMs ?? null
    this.refused = o.refused ?? false
  }
}

/** An error of anything as a short, secret-free line. */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code
    return code && !err.message.includes(code) ? `${err.message} (${code})` : err.message
  }
  return String(err)
}
