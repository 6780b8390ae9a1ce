import { createHash } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { AuditChain, EMPTY_HEAD, readLogTail, type ChainHead, type SealedRecord } from './chain.js'
import type { AuditRecordBody } from './types.js'

/**
 * Where the proxy appends audit records. It appends records without `chain`
 * (AuditRecordBody); the AuditChainer behind it seals each one (chain.seq,
 * chain.prev, chain.hash; see chain.ts) and hands the same sealed record to
 * every writer, so the file and stdout carry identical lines.
 */
export interface AuditSink {
  append(record: AuditRecordBody): void
  /** Resolves when everything appended so far has been written (and, for files, fsynced). */
  flush(): Promise<void>
  close(): Promise<void>
}

/**
 * A destination of sealed records: the local JSON-lines file (the source of
 * truth) and optionally stdout for container log pipelines. Each gets the
 * record and its line (canonical JSON, no newline) and writes the line as is.
 */
export interface AuditRecordWriter {
  write(sealed: SealedRecord): void
  flush(): Promise<void>
  close(): Promise<void>
}

/** Timing and error hooks of a sink (for metrics); called after the fact, never awaited. */
export interface AuditSinkObserver {
  /** A batch of `records` records was written in `seconds`. */
  written(records: number, seconds: number): void
  /** An fsync took `seconds`. */
  synced(seconds: number): void
  /** A write or fsync failed (it is retried). */
  failed(): void
}

/**
 * Seals records into the hash chain, in append order, and passes each to the
 * writer. One per log: its head starts where the log file ends
 * (FileAuditSink.head), or at seq 1 for a stdout-only audit stream.
 * Appending never waits: sealing is synchronous, so the chain order is the
 * append order.
 */
export class AuditChainer implements AuditSink {
  private readonly chain: AuditChain
  private closed = false

  constructor(
    private readonly writer: AuditRecordWriter,
    head: ChainHead = EMPTY_HEAD,
    private readonly log?: Logger,
  ) {
    this.chain = new AuditChain(head)
  }

  /** The last sealed record's seq and hash (for checkpoints). */
  get head(): ChainHead {
    return this.chain.head
  }

  append(record: AuditRecordBody): void {
    // Refuse before sealing: a sealed record that is not written would leave a gap in the chain.
    if (this.closed) throw new Error('audit log is closed')
    const sealed = this.chain.seal(record)
    if (sealed.sanitized) {
      this.log?.warn({ seq: sealed.record.chain.seq, type: record.type, id: record.id },
        'audit record held data that is not I-JSON (lone surrogate or non-finite number); recorded with U+FFFD / null in its place')
    }
    this.writer.write(sealed)
  }

  flush(): Promise<void> {
    return this.writer.flush()
  }

  async close(): Promise<void> {
    this.closed = true
    await this.writer.close()
  }
}

/**
 * Appends JSON lines to a file opened append-only with mode 0600. Records
 * are queued synchronously (statements never wait on disk in batched mode)
 * and written in batches: one write() for everything queued since the last
 * one. A failed write keeps what was not written and retries, so nothing is
 * dropped or written twice; the operational log says why.
 *
 * At open it reads the end of an existing file (not the whole file) for the
 * chain head, so a restarted proxy continues the chain (`head`). A last line
 * without its newline is a write torn by a crash: that record was never
 * completely written (and so never durable). The fragment is cut off (the
 * file is truncated to its last complete line) and the operational log says
 * so, with its offset, length and SHA-256; the chain continues from the last
 * complete record. Where the file cannot be truncated (e.g. an append-only
 * file attribute) the fragment is ended with a newline instead, and
 * `pgwitness verify` will report that line. A fragment that is in fact a
 * whole record continuing the chain (only the newline missing) is kept and
 * completed with its newline.
 */
export class FileAuditSink implements AuditRecordWriter {
  private handle: FileHandle | null = null
  private queue: string[] = []
  /** The unwritten rest of a batch whose write failed part-way; written before the queue. */
  private pending: { data: Buffer; records: number } | null = null
  /** Chain head of the file when it was opened. */
  private openHead: ChainHead = EMPTY_HEAD
  private writing: Promise<void> | null = null
  private scheduled = false
  private retryTimer: NodeJS.Timeout | null = null
  private lastError: string | null = null
  private closed = false
  /** Bytes written since the last fsync (batched durability syncs them every fsyncIntervalMs). */
  private dirty = false
  private syncTimer: NodeJS.Timeout | null = null

  private constructor(
    readonly path: string,
    private readonly log: Logger,
    private readonly fsyncIntervalMs: number,
    private readonly observer: AuditSinkObserver | null,
  ) {}

  static async open(path: string, log: Logger, fsyncIntervalMs: number, observer?: AuditSinkObserver): Promise<FileAuditSink> {
    const sink = new FileAuditSink(path, log, fsyncIntervalMs, observer ?? null)
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const handle = await open(path, 'a', 0o600)
    try {
      sink.openHead = await sink.recoverTail(handle)
    } catch (err) {
      await handle.close()
      throw err
    }
    sink.handle = handle
    sink.syncTimer = setInterval(() => void sink.syncIfDirty(), fsyncIntervalMs)
    sink.syncTimer.unref()
    return sink
  }

  /** Where the file's chain stood when it was opened: the AuditChainer continues from here. */
  get head(): ChainHead {
    return this.openHead
  }

  /** Find the chain head at the end of the file and deal with a torn last line (see the class comment). */
  private async recoverTail(append: FileHandle): Promise<ChainHead> {
    // A pipe or device has no end to read: its chain starts at seq 1.
    if (!(await append.stat()).isFile()) return EMPTY_HEAD
    const reader = await open(this.path, 'r')
    let tail
    let fragment: Buffer | null = null
    try {
      tail = await readLogTail(reader, this.path)
      if (tail.torn !== null && !tail.torn.complete) {
        fragment = Buffer.alloc(tail.torn.length)
        await reader.read(fragment, 0, fragment.length, tail.torn.offset)
      }
    } finally {
      await reader.close()
    }
    const torn = tail.torn
    if (torn === null) return tail.head
    if (torn.complete) {
      await append.write('\n')
      await append.sync()
      this.log.warn({ path: this.path, seq: tail.head.seq }, 'the audit log\'s last record lacked its newline (a crash between the record and its newline); completed it')
      return tail.head
    }
    const about = {
      path: this.path,
      offset: torn.offset,
      bytes: torn.length,
      sha256: createHash('sha256').update(fragment!).digest('hex'),
      continues_after_seq: tail.head.seq,
    }
    try {
      await append.truncate(torn.offset)
      await append.sync()
      this.log.warn(about, 'the audit log ended with an incomplete record (a write torn by a crash); removed the fragment, the chain continues from the last complete record')
    } catch (err) {
      await append.write('\n')
      await append.sync()
      this.log.error({ ...about, err: (err as Error).message },
        'the audit log ended with an incomplete record (a write torn by a crash) that cannot be removed; ended it with a newline: pgwitness verify will report that line as invalid')
    }
    return tail.head
  }

  /** Null while writing works; otherwise why it does not. */
  get error(): string | null {
    return this.lastError
  }

  get backlog(): number {
    return this.queue.length + (this.pending?.records ?? 0)
  }

  write(sealed: SealedRecord): void {
    if (this.closed) throw new Error('audit log is closed')
    this.queue.push(sealed.line + '\n')
    if (!this.scheduled && this.writing === null) {
      this.scheduled = true
      setImmediate(() => this.kick())
    }
  }

  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.pending !== null || this.writing !== null) {
      if (this.writing === null) this.kick()
      await this.writing
      if (this.lastError !== null && (this.queue.length > 0 || this.pending !== null)) throw new Error(`audit log not writable: ${this.lastError}`)
    }
    this.dirty = false
    if (this.handle) await this.timedSync(this.handle)
  }

  private async timedSync(handle: FileHandle): Promise<void> {
    const t0 = performance.now()
    try {
      await handle.sync()
    } catch (err) {
      this.observer?.failed()
      throw err
    }
    this.observer?.synced((performance.now() - t0) / 1000)
  }

  async close(): Promise<void> {
    if (this.closed) return
    try {
      await this.flush()
    } finally {
      this.closed = true
      if (this.retryTimer) clearTimeout(this.retryTimer)
      if (this.syncTimer) clearInterval(this.syncTimer)
      await this.handle?.close()
      this.handle = null
    }
  }

  private async syncIfDirty(): Promise<void> {
    if (!this.dirty || this.handle === null) return
    this.dirty = false
    try {
      await this.timedSync(this.handle)
    } catch (err) {
      this.dirty = true
      this.log.error({ path: this.path, err: (err as Error).message }, 'cannot fsync the audit log')
    }
  }

  private kick(): void {
    this.scheduled = false
    if (this.writing !== null || (this.queue.length === 0 && this.pending === null) || this.handle === null) return
    // A batch that failed part-way is finished first, on its own, so lines stay whole and in order.
    let batch = this.pending
    if (batch === null) {
      batch = { data: Buffer.from(this.queue.join(''), 'utf8'), records: this.queue.length }
      this.queue = []
    }
    this.pending = null
    this.writing = this.writeBatch(batch).finally(() => {
      this.writing = null
      if ((this.queue.length > 0 || this.pending !== null) && this.retryTimer === null) this.kick()
    })
  }

  private async writeBatch(batch: { data: Buffer; records: number }): Promise<void> {
    const data = batch.data
    const t0 = performance.now()
    let off = 0
    try {
      while (off < data.length) {
        const { bytesWritten } = await this.handle!.write(data, off, data.length - off)
        off += bytesWritten
      }
      this.dirty = true
      this.observer?.written(batch.records, (performance.now() - t0) / 1000)
      if (this.lastError !== null) {
        this.log.warn({ path: this.path }, 'audit log writable again')
        this.lastError = null
      }
    } catch (err) {
      // Keep what was not written, in order, and try again shortly: the
      // bytes already written stay (the file is append-only), so the retry
      // continues the same line rather than writing it twice.
      if (off > 0) this.dirty = true
      this.pending = { data: off === 0 ? data : data.subarray(off), records: batch.records }
      this.lastError = (err as Error).message
      this.observer?.failed()
      this.log.error({ path: this.path, err: this.lastError, backlog: this.backlog }, 'cannot write the audit log; retrying')
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null
        this.kick()
      }, 500)
      this.retryTimer.unref()
    }
  }
}

/** Writes each record to standard output as a JSON line (the same line as the file's). */
export class StdoutAuditSink implements AuditRecordWriter {
  write(sealed: SealedRecord): void {
    process.stdout.write(sealed.line + '\n')
  }
  flush(): Promise<void> {
    return new Promise((resolve) => (process.stdout.writableLength === 0 ? resolve() : process.stdout.once('drain', resolve)))
  }
  async close(): Promise<void> {
    await this.flush()
  }
}

/** Fans sealed records out to several writers (file + stdout): each gets the same record and line. */
export class AuditFanout implements AuditRecordWriter {
  constructor(private readonly sinks: readonly AuditRecordWriter[]) {}
  write(sealed: SealedRecord): void {
    for (const s of this.sinks) s.write(sealed)
  }
  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush()))
  }
  async close(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.close()))
  }
}

/** Audit disabled (benchmarks of the bare relay only): records go nowhere. */
export class DisabledAuditSink implements AuditSink {
  append(): void {}
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
