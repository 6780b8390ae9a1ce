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
 * Compact intents: the members every record of a session shares (proxy,
 * connection, session, identity, upstream, approval) are written once per
 * session, as a session line; each intent line holds only its own members
 * (id, time, statement, outcome, ...) and the session's key. An intent's
 * record is the union of the two. Serializing ~1.6 KB per statement twice
 * (once here, once in the log) was strict's largest cost.
 *
 *   {"session":"<key>","members":{...}}
 *   {"id":"…","after_seq":N,"session":"<key>","record":{...}}
 *
 * Lines of the earlier format (`{"id","after_seq","record"}` with the whole
 * record) are still read, so a journal left by a crashed older version is
 * recovered by this one.
 *
 * It is not evidence (the audit log is): it is neither chained nor shipped.
 */
import { fdatasync, writeSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { replaceFileDurably } from '../util/durable-file.js'
import { basename, dirname, extname, join } from 'node:path'
import type { Logger } from 'pino'
import type { AuditRecordBody } from '../evidence/types.js'

/** The record members all intents of one session share, serialized once. */
export interface IntentSession {
  /** Unique per session (the session id). */
  readonly key: string
  /** The shared members as a JSON object text. */
  readonly json: string
}

/**
 * A statement about to be forwarded: its record as it stands before the
 * outcome is known, as the session's shared members plus its own.
 */
export interface StatementIntent {
  /** The record id; the final record has the same id. */
  id: string
  /** The audit log's last seq when the intent was made: the final record, if any, comes after it. */
  afterSeq: number
  /** null: `record` is the whole record (an intent of the earlier journal format). */
  session: IntentSession | null
  /** The record's own members. */
  record: Record<string, unknown>
}

/** An intent's whole record: its session's shared members and its own. */
export function intentRecord(i: StatementIntent): AuditRecordBody {
  const shared = i.session === null ? {} : (JSON.parse(i.session.json) as Record<string, unknown>)
  return { ...shared, ...i.record } as unknown as AuditRecordBody
}

interface Unsettled {
  line: string
  session: IntentSession | null
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
  /** Sessions whose line the file holds (since it was last rewritten or emptied). */
  private readonly sessionsWritten = new Set<string>()
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
      if (i.session !== null && !this.sessionsWritten.has(i.session.key)) {
        this.sessionsWritten.add(i.session.key)
        this.queue.push(sessionLine(i.session))
      }
      const line = intentLine(i)
      this.unsettled.set(i.id, { line, session: i.session, finalSeq: null })
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
    this.sessionsWritten.clear()
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
            // One trip to the thread pool per group: the write lands in the page cache at once, fdatasync waits for the disk.
            const data = Buffer.from(lines.join(''), 'utf8')
            const fd = this.handle.fd
            for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off)
            this.bytes += data.length
            await new Promise<void>((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())))
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

  /** Replace the file with one holding only the unsettled intents (and their sessions' lines). */
  private async rewrite(): Promise<void> {
    const lines: string[] = []
    const sessions = new Set<string>()
    for (const u of this.unsettled.values()) {
      if (u.session !== null && !sessions.has(u.session.key)) {
        sessions.add(u.session.key)
        lines.push(sessionLine(u.session))
      }
      lines.push(u.line)
    }
    const data = Buffer.from(lines.join(''), 'utf8')
    await replaceFileDurably(this.path, data, { mode: 0o600 })
    const next = await open(this.path, 'a', 0o600)
    const old = this.handle
    this.handle = next
    await old.close()
    this.bytes = data.length
    this.mustRewrite = false
    this.sessionsWritten.clear()
    for (const k of sessions) this.sessionsWritten.add(k)
  }
}

function sessionLine(s: IntentSession): string {
  return `{"session":${JSON.stringify(s.key)},"members":${s.json}}\n`
}

function intentLine(i: StatementIntent): string {
  const session = i.session === null ? '' : `,"session":${JSON.stringify(i.session.key)}`
  return `{"id":${JSON.stringify(i.id)},"after_seq":${i.afterSeq}${session},"record":${JSON.stringify(i.record)}}\n`
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
  const sessions = new Map<string, IntentSession>()
  let torn = 0
  for (const line of text.split('\n')) {
    if (line === '') continue
    try {
      const j = JSON.parse(line) as { id?: unknown; after_seq?: unknown; record?: unknown; session?: unknown; members?: unknown }
      if (typeof j.session === 'string' && j.id === undefined) {
        if (!isObject(j.members)) throw new Error('not a session line')
        sessions.set(j.session, { key: j.session, json: JSON.stringify(j.members) })
        continue
      }
      if (typeof j.id !== 'string' || typeof j.after_seq !== 'number' || !isObject(j.record)) throw new Error('not an intent')
      let session: IntentSession | null = null
      if (j.session !== undefined) {
        // Its session line is written before it, in the same or an earlier fsync: without it the line is not whole.
        session = typeof j.session === 'string' ? (sessions.get(j.session) ?? null) : null
        if (session === null) throw new Error('an intent without its session line')
      }
      byId.set(j.id, { id: j.id, afterSeq: j.after_seq, session, record: j.record })
    } catch {
      torn++
    }
  }
  // A torn line is an intent whose write never completed: its fsync never returned, so its statement was never forwarded.
  if (torn > 0) log.warn({ path, lines: torn }, 'statement intent journal: skipped incomplete line(s) left by a crash')
  return [...byId.values()]
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}
