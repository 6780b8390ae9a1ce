import { mkdirSync } from 'node:fs'
import { open, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import type { AuditRecord } from './types.js'

/**
 * Where audit records go. The local JSON-lines file is the source of truth;
 * stdout is an optional copy for container log pipelines.
 */
export interface AuditSink {
  append(record: AuditRecord): void
  /** Resolves when everything appended so far has been written (and, for files, fsynced). */
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
 * Appends JSON lines to a file opened append-only with mode 0600. Records
 * are queued synchronously (statements never wait on disk in batched mode)
 * and written in batches: one write() for everything queued since the last
 * one. A failed write keeps the batch and retries, so nothing is dropped
 * silently; the operational log says why.
 */
export class FileAuditSink implements AuditSink {
  private handle: FileHandle | null = null
  private queue: string[] = []
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
    sink.handle = await open(path, 'a', 0o600)
    sink.syncTimer = setInterval(() => void sink.syncIfDirty(), fsyncIntervalMs)
    sink.syncTimer.unref()
    return sink
  }

  /** Null while writing works; otherwise why it does not. */
  get error(): string | null {
    return this.lastError
  }

  get backlog(): number {
    return this.queue.length
  }

  append(record: AuditRecord): void {
    if (this.closed) throw new Error('audit log is closed')
    this.queue.push(JSON.stringify(record) + '\n')
    if (!this.scheduled && this.writing === null) {
      this.scheduled = true
      setImmediate(() => this.kick())
    }
  }

  async flush(): Promise<void> {
    while (this.queue.length > 0 || this.writing !== null) {
      if (this.writing === null) this.kick()
      await this.writing
      if (this.lastError !== null && this.queue.length > 0) throw new Error(`audit log not writable: ${this.lastError}`)
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
    if (this.writing !== null || this.queue.length === 0 || this.handle === null) return
    const batch = this.queue
    this.queue = []
    this.writing = this.write(batch).finally(() => {
      this.writing = null
      if (this.queue.length > 0 && this.retryTimer === null) this.kick()
    })
  }

  private async write(batch: string[]): Promise<void> {
    const data = Buffer.from(batch.join(''), 'utf8')
    const t0 = performance.now()
    try {
      let off = 0
      while (off < data.length) {
        const { bytesWritten } = await this.handle!.write(data, off, data.length - off)
        off += bytesWritten
      }
      this.dirty = true
      this.observer?.written(batch.length, (performance.now() - t0) / 1000)
      if (this.lastError !== null) {
        this.log.warn({ path: this.path }, 'audit log writable again')
        this.lastError = null
      }
    } catch (err) {
      // Keep the records, in order, and try again shortly.
      this.queue = batch.concat(this.queue)
      this.lastError = (err as Error).message
      this.observer?.failed()
      this.log.error({ path: this.path, err: this.lastError, backlog: this.queue.length }, 'cannot write the audit log; retrying')
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null
        this.kick()
      }, 500)
      this.retryTimer.unref()
    }
  }
}

/** Writes each record to standard output as a JSON line. */
export class StdoutAuditSink implements AuditSink {
  append(record: AuditRecord): void {
    process.stdout.write(JSON.stringify(record) + '\n')
  }
  flush(): Promise<void> {
    return new Promise((resolve) => (process.stdout.writableLength === 0 ? resolve() : process.stdout.once('drain', resolve)))
  }
  async close(): Promise<void> {
    await this.flush()
  }
}

/** Fans records out to several sinks (file + stdout). */
export class AuditFanout implements AuditSink {
  constructor(private readonly sinks: readonly AuditSink[]) {}
  append(record: AuditRecord): void {
    for (const s of this.sinks) s.append(record)
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
