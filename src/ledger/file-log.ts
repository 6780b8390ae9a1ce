import { createHash } from 'node:crypto'
import { mkdirSync, writeSync } from 'node:fs'
import { open, rename, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import { performance } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { EMPTY_HEAD, lineInto, lineLength, maxLineBytes, readLogTail, type ChainHead, type SealedRecord } from './chain.js'
import { firstSeqOf, listLogFiles, rotatedLogPath } from './log-files.js'
import { syncDir } from '../util/durable-file.js'
import type { AuditRecordWriter, AuditSinkObserver } from './log.js'

/**
 * Appends JSON lines to a file opened append-only with mode 0600. Records
 * are queued synchronously and written in batches: one write() per
 * event-loop turn for everything queued in it (into the page cache; in
 * batched mode no statement waits for an fsync, which runs on a timer). A
 * failed write keeps what was not written and retries, so nothing is
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
/** Lines written in one write(): how many records, and the seq of the last. */
interface Batch {
  /** The lines' bytes (in the reusable write buffer), or the bytes still to write after a write that failed part-way (a copy). */
  data: Buffer
  records: number
  lastSeq: number
}

/** Where the queue says "rotate here": the records before it go to the file being rotated. */
interface RotationMark {
  rotateFrom: number
}

function isRotationMark(q: SealedRecord | RotationMark): q is RotationMark {
  return 'rotateFrom' in q
}

/** The write buffer's usual size: a turn's lines at -c 8 take a few kilobytes; a burst grows it for one batch. */
const WRITE_BUFFER_BYTES = 256 * 1024

export interface RotationPolicy {
  maxBytes: number | null
  intervalMs: number | null
}

export class FileAuditSink implements AuditRecordWriter {
  private handle: FileHandle | null = null
  private queue: Array<SealedRecord | RotationMark> = []
  /** The lines of one write are encoded here (reused; shrunk back after a burst). */
  private writeBuffer = Buffer.allocUnsafe(WRITE_BUFFER_BYTES)
  /** The active file as it will be once the queue is written: first seq, bytes, records, since when. */
  private fileFirstSeq: number | null = null
  private fileBytes = 0
  private fileRecords = 0
  private fileStartedAt = Date.now()
  /** seq of the first record still in the queue (records are queued in seq order). */
  private nextUnwritten = 0
  /** seq of the last record written to the file (not necessarily synced). */
  private writtenSeq = 0
  /** seq of the last record known to be on disk (written, then fsynced). */
  private syncedThrough = 0
  private readonly syncListeners: Array<(seq: number) => void> = []
  /** The unwritten rest of a batch whose write failed part-way; written before the queue. */
  private pending: Batch | null = null
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
    private readonly rotation: RotationPolicy | null,
  ) {}

  static async open(path: string, log: Logger, fsyncIntervalMs: number, observer?: AuditSinkObserver, rotation?: RotationPolicy | null): Promise<FileAuditSink> {
    const sink = new FileAuditSink(path, log, fsyncIntervalMs, observer ?? null, rotation ?? null)
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
    const handle = await open(path, 'a', 0o600)
    try {
      sink.openHead = await sink.recoverTail(handle)
      const st = await handle.stat()
      sink.fileBytes = st.size
      if (st.size > 0) {
        sink.fileFirstSeq = await firstSeqOf(path)
        sink.fileRecords = 1 // at least; only "has records" matters for rotation
        sink.fileStartedAt = st.birthtimeMs > 0 ? st.birthtimeMs : st.ctimeMs
      } else if (st.isFile()) {
        // A new (or just rotated) active file: the chain continues from the last rotated file.
        sink.openHead = await headOfRotated(path, sink.openHead)
      }
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
    this.queue.push(sealed)
    if (this.nextUnwritten === 0) this.nextUnwritten = sealed.chain.seq
    this.fileFirstSeq ??= sealed.chain.seq
    this.fileBytes += lineLength(sealed) + 1
    this.fileRecords++
    this.schedule()
  }

  private schedule(): void {
    if (!this.scheduled && this.writing === null) {
      this.scheduled = true
      setImmediate(() => this.kick())
    }
  }

  rotationDue(): boolean {
    const r = this.rotation
    if (r === null || this.fileRecords === 0 || this.fileFirstSeq === null) return false
    return (r.maxBytes !== null && this.fileBytes >= r.maxBytes) || (r.intervalMs !== null && Date.now() - this.fileStartedAt >= r.intervalMs)
  }

  rotate(): void {
    if (this.fileFirstSeq === null) return
    this.queue.push({ rotateFrom: this.fileFirstSeq })
    this.fileFirstSeq = null
    this.fileBytes = 0
    this.fileRecords = 0
    this.fileStartedAt = Date.now()
    this.schedule()
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

  /** seq of the last record known to be durable in the file. */
  get syncedSeq(): number {
    return this.syncedThrough
  }

  /** Called with the synced seq after every fsync that made more records durable. */
  onSynced(listener: (seq: number) => void): void {
    this.syncListeners.push(listener)
  }

  private async timedSync(handle: FileHandle): Promise<void> {
    const t0 = performance.now()
    const covers = this.writtenSeq
    try {
      await handle.sync()
    } catch (err) {
      this.observer?.failed()
      throw err
    }
    this.observer?.synced((performance.now() - t0) / 1000)
    if (covers > this.syncedThrough) {
      this.syncedThrough = covers
      for (const l of this.syncListeners) l(covers)
    }
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
      const head = this.queue[0]!
      if (isRotationMark(head)) {
        this.writing = this.rotateFile(head).finally(() => {
          this.writing = null
          if (this.queue.length > 0 && this.retryTimer === null) this.kick()
        })
        return
      }
      // Everything up to the next rotation mark goes into the current file.
      let n = this.queue.findIndex(isRotationMark)
      if (n < 0) n = this.queue.length
      const records = this.queue.splice(0, n) as SealedRecord[]
      batch = { data: this.encode(records), records: records.length, lastSeq: this.nextUnwritten + records.length - 1 }
      this.nextUnwritten += records.length
    }
    this.pending = null
    this.writeBatch(batch)
    // A rotation mark reached while writing, or lines queued since: go on next turn.
    if (this.queue.length > 0 && this.retryTimer === null) this.schedule()
  }

  /**
   * One write() of a batch, synchronously on the event loop: appending a few
   * kilobytes to the page cache costs less than handing it to the thread
   * pool and taking the completion back (a futex wake, a promise, a second
   * turn), and one write per event-loop turn keeps the count of writes low.
   * The fsync that makes the lines durable stays off the event loop
   * (syncIfDirty; strict durability's intents are fsynced by the journal).
   */
  private writeBatch(batch: Batch): void {
    const data = batch.data
    const t0 = performance.now()
    let off = 0
    try {
      while (off < data.length) off += writeSync(this.handle!.fd, data, off, data.length - off)
      this.dirty = true
      this.writtenSeq = batch.lastSeq
      this.observer?.written(batch.records, (performance.now() - t0) / 1000)
      if (this.lastError !== null) {
        this.log.warn({ path: this.path }, 'audit log writable again')
        this.lastError = null
      }
    } catch (err) {
      // Keep what was not written, in order, and try again shortly: the
      // bytes already written stay (the file is append-only), so the retry
      // continues the same line rather than writing it twice. A copy: the
      // write buffer is reused by the next batch.
      if (off > 0) this.dirty = true
      this.pending = { data: Buffer.from(data.subarray(off)), records: batch.records, lastSeq: batch.lastSeq }
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

  /** The records' lines as UTF-8, each with its newline, in the write buffer (grown when they do not fit). */
  private encode(records: readonly SealedRecord[]): Buffer {
    let buf = this.writeBuffer
    if (buf.length > WRITE_BUFFER_BYTES) buf = Buffer.allocUnsafe(WRITE_BUFFER_BYTES) // a burst is over: give the memory back
    let off = 0
    for (const r of records) {
      const need = maxLineBytes(r)
      if (buf.length - off < need) {
        const bigger = Buffer.allocUnsafe(Math.max(2 * buf.length, off + need))
        buf.copy(bigger, 0, 0, off)
        buf = bigger
      }
      off = lineInto(r, buf, off)
    }
    this.writeBuffer = buf
    return buf.subarray(0, off)
  }

  /**
   * Rename the active file to its rotated name (by its first seq) and start a
   * new one. The old file is fsynced first; the directory is fsynced after,
   * so a crash leaves either name, never both or neither. On failure the
   * mark stays at the head of the queue and rotation is retried; records
   * queued after the mark wait for it (the failure shows in the operational
   * log and /readyz), so no record lands in the wrong file.
   */
  private async rotateFile(mark: RotationMark): Promise<void> {
    const to = rotatedLogPath(this.path, mark.rotateFrom)
    try {
      await this.timedSync(this.handle!)
      this.dirty = false
      await rename(this.path, to)
      const next = await open(this.path, 'a', 0o600)
      const old = this.handle!
      this.handle = next
      await old.close()
      await syncDir(dirname(this.path))
      this.queue.shift()
      this.lastError = null
      this.log.info({ path: this.path, rotated_to: to, first_seq: mark.rotateFrom }, 'audit log rotated')
    } catch (err) {
      this.lastError = (err as Error).message
      this.observer?.failed()
      this.log.error({ path: this.path, to, err: this.lastError }, 'cannot rotate the audit log; retrying')
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null
        this.kick()
      }, 500)
      this.retryTimer.unref()
    }
  }
}

/** Head of the newest rotated file of the log at `activePath` (or `dflt` when there is none). */
async function headOfRotated(activePath: string, dflt: ChainHead): Promise<ChainHead> {
  const rotated = listLogFiles(activePath).filter((f) => f.firstSeq !== null)
  const last = rotated[rotated.length - 1]
  if (last === undefined) return dflt
  const fh = await open(last.path, 'r')
  try {
    return (await readLogTail(fh, last.path)).head
  } finally {
    await fh.close()
  }
}
