/**
 * The statement intent journal behind `audit.durability: strict`.
 *
 * Strict durability promises that a statement reaches PostgreSQL only after
 * a record of it is on disk, and that after a crash (kill -9 at any moment)
 * every statement PostgreSQL saw has a `statement` record. The record the
 * contract wants carries the outcome, which only exists after the statement
 * ran; so before forwarding, the session writes the record as it would be
 * with `outcome.status: unknown` (its *intent*) to this journal and waits
 * for the fsync. When the statement completes, its real record (same `id`)
 * goes to the audit log as usual. On the next start, every intent whose id
 * is not in the audit log is appended to the log as it stands: a statement
 * forwarded whose end was never seen (recoverUnfinishedStatements).
 *
 * Group commit: intents queued while an fsync is in flight are written and
 * synced together by the next one, so the cost per statement falls as
 * concurrency rises (one fsync per round, not per statement).
 *
 * The journal only needs the intents that are not yet settled: an intent is
 * settled when its final record is fsynced in the audit log (logSynced) or
 * when the server skipped the statement (discard). When the file grows past
 * COMPACT_BYTES it is rewritten with the unsettled intents only (temp file,
 * fsync, rename), so it stays small however long the proxy runs.
 *
 * It is not evidence (the audit log is): it is neither chained nor shipped.
 */
import { open, type FileHandle } from 'node:fs/promises'
import { replaceFileDurably } from '../util/durable-file.js'
import { basename, dirname, extname, join } from 'node:path'
import type { Logger } from 'pino'
import type { AuditRecordBody } from '../evidence/types.js'

/** A statement about to be forwarded: its record as it stands before the outcome is known. */
export interface StatementIntent {
  /** The record id; the final record has the same id. */
  id: string
  /** The audit log's last seq when the intent was made: the final record, if any, comes after it. */
  afterSeq: number
  record: AuditRecordBody
}

interface Unsettled {
  line: string
  /** seq of the final record once appended; null while the statement runs. */
  finalSeq: number | null
}

const COMPACT_BYTES = 8 * 1024 * 1024

/** Where the journal of the audit log at `logPath` lives: audit/audit.jsonl → audit/audit.intents. */
export function intentJournalPath(logPath: string): string {
  return join(dirname(logPath), `${basename(logPath, extname(logPath))}.intents`)
}

export class IntentJournal {
  private readonly unsettled = new Map<string, Unsettled>()
  private queue: string[] = []
  private waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = []
  private running = false
  private bytes = 0
  private lastError: string | null = null
  /** A failed write may have left a partial line: rewrite the file before appending again. */
  private mustRewrite = false
  private closed = false
  private retryTimer: NodeJS.Timeout | null = null

  private constructor(
    readonly path: string,
    private handle: FileHandle,
    private readonly log: Logger,
  ) {}

  /** Open (create) the journal and read the intents it holds from a previous run. */
  static async open(path: string, log: Logger): Promise<{ journal: IntentJournal; previous: StatementIntent[] }> {
    const previous = await readIntents(path, log)
    const handle = await open(path, 'a', 0o600)
    const journal = new IntentJournal(path, handle, log)
    journal.bytes = (await handle.stat()).size
    return { journal, previous }
  }

  /** Null while the journal can be written; otherwise why not. */
  get error(): string | null {
    return this.lastError
  }

  /** Unsettled intents (for metrics and tests). */
  get size(): number {
    return this.unsettled.size
  }

  /** Durably record intents; resolves after the fsync that covers them, rejects if they could not be written. */
  commit(intents: readonly StatementIntent[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error('the intent journal is closed'))
    for (const i of intents) {
      const line = JSON.stringify({ id: i.id, after_seq: i.afterSeq, record: i.record }) + '\n'
      this.unsettled.set(i.id, { line, finalSeq: null })
      this.queue.push(line)
    }
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject })
      if (!this.running) void this.run()
    })
  }

  /** The statement's final record was appended to the audit log as `seq`. */
  resolve(id: string, seq: number): void {
    const u = this.unsettled.get(id)
    if (u) u.finalSeq = seq
  }

  /** The statement never ran (the server skipped it, or it was refused before forwarding). */
  discard(id: string): void {
    this.unsettled.delete(id)
  }

  /** The audit log is durable through `seq`: intents whose final record is at or before it are settled. */
  logSynced(seq: number): void {
    for (const [id, u] of this.unsettled) if (u.finalSeq !== null && u.finalSeq <= seq) this.unsettled.delete(id)
  }

  /** Empty the journal (after its intents were recovered into the audit log). */
  async reset(): Promise<void> {
    await this.handle.truncate(0)
    await this.handle.sync()
    this.bytes = 0
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.retryTimer) clearTimeout(this.retryTimer)
    while (this.running) await new Promise((r) => setImmediate(r))
    await this.handle.close()
  }

  private async run(): Promise<void> {
    this.running = true
    try {
      while (this.queue.length > 0) {
        const lines = this.queue
        const waiters = this.waiters
        this.queue = []
        this.waiters = []
        try {
          if (this.mustRewrite || this.bytes > COMPACT_BYTES) {
            // The rewrite holds every unsettled intent, these included.
            await this.rewrite()
          } else {
            const data = Buffer.from(lines.join(''), 'utf8')
            await writeAll(this.handle, data)
            await this.handle.sync()
            this.bytes += data.length
          }
          if (this.lastError !== null) this.log.warn({ path: this.path }, 'statement intent journal writable again')
          this.lastError = null
          for (const w of waiters) w.resolve()
        } catch (err) {
          this.mustRewrite = true
          this.lastError = (err as Error).message
          this.log.error({ path: this.path, err: this.lastError }, 'cannot write the statement intent journal: statements are refused until it can be written')
          for (const w of waiters) w.reject(err as Error)
          this.scheduleRetry()
        }
      }
    } finally {
      this.running = false
    }
  }

  /**
   * While the journal cannot be written no statement is forwarded, so no
   * commit would ever find out that it works again: retry the rewrite on a
   * timer until it succeeds.
   */
  private scheduleRetry(): void {
    if (this.retryTimer !== null || this.closed) return
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null
      if (this.closed || this.running || this.lastError === null) return
      this.running = true
      this.rewrite().then(
        () => {
          this.lastError = null
          this.log.warn({ path: this.path }, 'statement intent journal writable again')
        },
        (err: Error) => {
          this.lastError = err.message
          this.scheduleRetry()
        },
      ).finally(() => {
        this.running = false
        if (this.queue.length > 0) void this.run()
      })
    }, 500)
    this.retryTimer.unref()
  }

  /** Replace the file with one holding only the unsettled intents. */
  private async rewrite(): Promise<void> {
    const data = Buffer.from([...this.unsettled.values()].map((u) => u.line).join(''), 'utf8')
    await replaceFileDurably(this.path, data, { mode: 0o600 })
    const next = await open(this.path, 'a', 0o600)
    const old = this.handle
    this.handle = next
    await old.close()
    this.bytes = data.length
    this.mustRewrite = false
  }
}

async function writeAll(fh: FileHandle, data: Buffer): Promise<void> {
  let off = 0
  while (off < data.length) off += (await fh.write(data, off, data.length - off)).bytesWritten
}

/** The intents in a journal file; lines that are not whole intents (a write torn by a crash) are skipped. */
async function readIntents(path: string, log: Logger): Promise<StatementIntent[]> {
  let text: string
  try {
    const fh = await open(path, 'r')
    try {
      text = await fh.readFile('utf8')
    } finally {
      await fh.close()
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  const byId = new Map<string, StatementIntent>()
  let torn = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    try {
      const j = JSON.parse(line) as { id?: unknown; after_seq?: unknown; record?: unknown }
      if (typeof j.id !== 'string' || typeof j.after_seq !== 'number' || j.record === null || typeof j.record !== 'object') throw new Error('not an intent')
      byId.set(j.id, { id: j.id, afterSeq: j.after_seq, record: j.record as AuditRecordBody })
    } catch {
      torn++
    }
  }
  // A torn line is an intent whose write never completed: its fsync never returned, so its statement was never forwarded.
  if (torn > 0) log.warn({ path, lines: torn }, 'statement intent journal: skipped incomplete line(s) left by a crash')
  return [...byId.values()]
}
