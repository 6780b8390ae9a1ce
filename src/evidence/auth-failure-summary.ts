/**
 * auth.failure noise is summarized, not multiplied. A client retrying a
 * refused connection in a loop would otherwise write a record per attempt.
 * Failures are grouped by key — source address, reason, and the token's
 * issuer and subject when they are known. Within a window that opens at a
 * key's first failure, its first `keepFirst` failures are written as usual;
 * the rest are counted, and when the window closes (or the proxy stops) one
 * auth.failure record stands for them: `count`, `first_time`, `last_time`,
 * and the last counted attempt's fields. Records written plus summary counts
 * are exactly the failures seen. (Metrics count every failure, elsewhere.)
 */
import type { AuditSink } from '../ledger/log.js'
import type { AuthFailureRecord, Unchained } from './types.js'
import type { AuthFailureSummaryConfig } from '../config/types.js'
import { uuidv7 } from '../util/ids.js'
import { rfc3339Micros } from '../util/time.js'

type Failure = Unchained<AuthFailureRecord>

interface Window {
  recorded: number
  /** Failures counted, not written; their summary is due when the window closes. */
  counted: number
  firstTime: string
  last: Failure | null
  timer: NodeJS.Timeout
}

/** Beyond this many keys with an open window, failures of new keys are written one by one (memory stays bounded). */
const MAX_OPEN_WINDOWS = 10_000

export class AuthFailureSummarizer {
  private readonly windows = new Map<string, Window>()

  constructor(
    private readonly audit: Pick<AuditSink, 'append'>,
    private readonly config: AuthFailureSummaryConfig,
  ) {}

  /** Writes the failure's record, or counts it into the summary of its key's window. */
  record(failure: Failure): void {
    if (this.config.windowMs === 0) {
      this.audit.append(failure)
      return
    }
    const key = keyOf(failure)
    let w = this.windows.get(key)
    if (w === undefined) {
      if (this.windows.size >= MAX_OPEN_WINDOWS) {
        this.audit.append(failure)
        return
      }
      w = { recorded: 0, counted: 0, firstTime: '', last: null, timer: setTimeout(() => this.close(key), this.config.windowMs).unref() }
      this.windows.set(key, w)
    }
    if (w.recorded < this.config.keepFirst) {
      w.recorded++
      this.audit.append(failure)
      return
    }
    if (w.counted === 0) w.firstTime = failure.time
    w.counted++
    w.last = failure
  }

  /** Closes every window now, writing the summaries due (at proxy stop, before proxy.stop). */
  flush(): void {
    for (const key of [...this.windows.keys()]) this.close(key)
  }

  /** Failures counted and not yet written in a summary (for tests and shutdown logs). */
  get pending(): number {
    let n = 0
    for (const w of this.windows.values()) n += w.counted
    return n
  }

  private close(key: string): void {
    const w = this.windows.get(key)
    if (w === undefined) return
    this.windows.delete(key)
    clearTimeout(w.timer)
    if (w.counted === 0 || w.last === null) return
    this.audit.append(summaryRecord(w.last, w.counted, w.firstTime))
  }
}

function keyOf(f: Failure): string {
  return JSON.stringify([f.connection?.client.address ?? '', f.reason, f.identity?.issuer ?? null, f.identity?.subject ?? null])
}

/** One auth.failure standing for `count` failures of one key; its other fields are the last one's. */
function summaryRecord(last: Failure, count: number, firstTime: string): Failure {
  const address = last.connection?.client.address ?? 'an unknown address'
  return {
    ...last,
    id: uuidv7(),
    time: rfc3339Micros(),
    detail: `${count} more failure${count === 1 ? '' : 's'} (${last.reason}) from ${address} between ${firstTime} and ${last.time}, ` +
      `counted instead of recorded one by one; the last: ${last.detail}`,
    count,
    first_time: firstTime,
    last_time: last.time,
  }
}
