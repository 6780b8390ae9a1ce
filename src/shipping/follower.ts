/**
 * Reads the audit log from a position onwards, across rotated files, and
 * tails the active file: the source every shipper reads from.
 *
 * - Start: `start(after)` positions just after `after` (a sink's cursor). The
 *   record at `after.seq` is looked up and its hash compared: when the log
 *   no longer holds that record (the log was replaced, or a crash lost an
 *   unsynced tail that the cursor had already passed) delivery starts again
 *   from the log's first record — duplicates, never a gap.
 * - Rotation (log-files.ts): the writer renames the active file to
 *   `<stem>.<first seq>.<ext>` and opens a new one under the old name. The
 *   follower notices that the file it has open is no longer the active one
 *   (inode differs), reads the old file to its end, then moves to the next
 *   file in chain order.
 * - A line without its '\n' at the end of the active file is still being
 *   written: it is kept back until its newline arrives.
 * - Waiting for more: fs.watch on the log's folder wakes it early; a poll
 *   (default 200 ms) covers file systems where watching does not work.
 */
import { watch, type FSWatcher } from 'node:fs'
import { open, stat, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'
import type { Logger } from 'pino'
import { firstSeqOf } from '../ledger/log-files.js'
import { logFilesWithInodes, probeLogHead } from './log-scan.js'
import type { AuditRecord } from '../evidence/types.js'
import type { FollowedRecord } from './types.js'

/** A position in the chain: the last record handled (seq 0 = before the first). */
export interface LogPosition {
  seq: number
  hash: string
}

export interface FollowerOptions {
  /** Poll interval while waiting for new records (fs.watch usually wakes it sooner). */
  pollMs?: number
  /** How long an unterminated line at the end of a rotated file may stay before it is taken as a torn write and skipped. */
  tornGraceMs?: number
  log?: Logger
}

export interface ReadLimits {
  maxRecords: number
  /** Stop adding lines once about this many bytes (UTF-16 units of the lines) are in the batch; one longer line is still returned alone. */
  maxBytes: number
  signal?: AbortSignal
}

interface OpenFile {
  fh: FileHandle
  ino: number
  path: string
  /** Next byte to read. */
  offset: number
  /** Bytes after the last '\n' read so far. */
  partial: Buffer
  /** The writer has moved on to a newer file: read this one to its end, then go on. */
  rotated: boolean
  /** When the unterminated tail of a rotated file last grew. */
  partialSince: number
}

const CHUNK = 256 * 1024

export class AuditLogFollower {
  private file: OpenFile | null = null
  /** Next seq wanted; null = whatever the log starts with (after a reset). */
  private expected: number | null = 1
  /** Set by start(): the record at this seq must have this hash (it is not emitted). */
  private verify: LogPosition | null = null
  /** Set when the cursor does not match the log: why. fill() then starts over from the log's first record. */
  private resetPending: string | null = null
  private ready: FollowedRecord[] = []
  private lastSeq = 0
  private readonly buf = Buffer.allocUnsafe(CHUNK)
  private watcher: FSWatcher | null = null
  private wake: (() => void) | null = null
  private closed = false
  private readonly pollMs: number
  private readonly tornGraceMs: number
  private readonly log: Logger | undefined

  constructor(readonly activePath: string, o: FollowerOptions = {}) {
    this.pollMs = o.pollMs ?? 200
    this.tornGraceMs = o.tornGraceMs ?? 2000
    this.log = o.log
  }

  /** The highest seq read from the log so far (the head as far as this follower knows). */
  get lastReadSeq(): number {
    return this.lastSeq
  }

  /** Position after `after`; the next batch starts with seq after.seq + 1. */
  async start(after: LogPosition): Promise<void> {
    this.startWatching()
    await this.reopen(after.seq > 0 ? after.seq : 1)
    this.verify = after.seq > 0 ? after : null
    this.expected = after.seq > 0 ? after.seq : 1
  }

  /**
   * The next records (at least one), waiting for them as long as needed.
   * Returns [] only when `signal` aborts or the follower is closed.
   */
  async next(limits: ReadLimits): Promise<FollowedRecord[]> {
    for (;;) {
      if (this.closed || limits.signal?.aborted) return []
      await this.fill(limits.maxRecords)
      if (this.ready.length > 0) return this.take(limits)
      await this.waitForChange(limits.signal)
    }
  }

  /** The log's head: the seq of the last complete record of the active file. */
  async probeHead(): Promise<number> {
    return (await probeLogHead(this.activePath)) ?? this.lastSeq
  }

  async close(): Promise<void> {
    this.closed = true
    this.watcher?.close()
    this.watcher = null
    this.wake?.()
    await this.file?.fh.close().catch(() => undefined)
    this.file = null
  }

  private take(limits: ReadLimits): FollowedRecord[] {
    let bytes = 0
    let n = 0
    while (n < this.ready.length && n < limits.maxRecords) {
      const len = this.ready[n]!.line.length
      if (n > 0 && bytes + len > limits.maxBytes) break
      bytes += len
      n++
    }
    return this.ready.splice(0, n)
  }

  /** Read until `want` records are ready or the log has no more complete lines for now. */
  private async fill(want: number): Promise<void> {
    const buf = this.buf
    while (this.ready.length < want && !this.closed) {
      if (this.file === null) {
        if (!(await this.reopen(this.expected ?? 1))) return
        continue
      }
      const f = this.file
      const { bytesRead } = await f.fh.read(buf, 0, CHUNK, f.offset)
      if (bytesRead > 0) {
        f.offset += bytesRead
        this.consume(f, buf.subarray(0, bytesRead))
        if (this.resetPending !== null) await this.applyReset()
        continue
      }
      // At the end of the file. Has the writer moved on to a newer file?
      if (!f.rotated) {
        if (!(await this.isRotated(f))) {
          if (this.verify === null) return
          // The end of the log, and the cursor's record was not in it.
          this.resetPending = `the log ends at seq ${this.lastSeq}, before the cursor's seq ${this.verify.seq}`
          await this.applyReset()
          continue
        }
        // Read once more: the writer may have finished this file after our last read.
        f.rotated = true
        f.partialSince = Date.now()
        continue
      }
      if (f.partial.length > 0) {
        if (Date.now() - f.partialSince < this.tornGraceMs) return
        this.log?.warn({ path: f.path, bytes: f.partial.length, after_seq: this.lastSeq },
          'audit log shipper: a rotated audit log file ends with an incomplete line (a torn write); skipped it, it is not a record')
        f.partial = Buffer.alloc(0)
      }
      if (!(await this.moveToNextFile(f))) return
    }
  }

  /** Split into lines; keep an unterminated rest for later. */
  private consume(f: OpenFile, chunk: Buffer): void {
    const data = f.partial.length > 0 ? Buffer.concat([f.partial, chunk]) : chunk
    let start = 0
    for (;;) {
      const nl = data.indexOf(10, start)
      if (nl < 0) break
      if (nl > start) this.handleLine(f, data.toString('utf8', start, nl))
      start = nl + 1
    }
    // Copy the rest: `chunk` is the reused read buffer.
    f.partial = start < data.length ? Buffer.from(data.subarray(start)) : Buffer.alloc(0)
    if (f.partial.length > 0) f.partialSince = Date.now()
  }

  private handleLine(f: OpenFile, line: string): void {
    let record: AuditRecord
    let seq: number
    let hash: string
    try {
      record = JSON.parse(line) as AuditRecord
      const chain = (record as { chain?: { seq?: unknown; hash?: unknown } } | null)?.chain
      if (typeof chain?.seq !== 'number' || !Number.isSafeInteger(chain.seq) || chain.seq < 1 || typeof chain.hash !== 'string') {
        throw new Error('no chain.seq / chain.hash')
      }
      seq = chain.seq
      hash = chain.hash
    } catch (err) {
      // Not a record (pgwitness verify reports it too); there is nothing to deliver.
      this.log?.error({ path: f.path, after_seq: this.lastSeq, err: (err as Error).message }, 'audit log shipper: a line of the audit log is not a chained record; skipped')
      return
    }
    if (seq > this.lastSeq) this.lastSeq = seq
    const v = this.verify
    if (v !== null) {
      if (seq < v.seq) return
      this.verify = null
      if (seq === v.seq) {
        if (hash === v.hash) {
          this.expected = seq + 1
          return
        }
        this.resetPending = `the record at seq ${seq} has another hash than the one delivered`
        return
      }
      // The cursor's record is older than anything left in the log (rotated files removed).
      this.log?.warn({ cursor_seq: v.seq, first_seq: seq }, 'audit log shipper: the log no longer holds the records after the cursor up to this one; delivering from the first record it has')
      this.expected = seq
    }
    if (this.resetPending !== null) return
    if (this.expected !== null) {
      if (seq < this.expected) return
      if (seq > this.expected) {
        this.log?.warn({ expected_seq: this.expected, seq, path: f.path }, 'audit log shipper: records are missing from the audit log (a gap in chain.seq); delivering what is there')
      }
    }
    this.expected = seq + 1
    this.ready.push({ seq, line, record })
  }

  private async applyReset(): Promise<void> {
    const why = this.resetPending
    if (why === null) return
    this.log?.warn({ path: this.activePath, why }, 'audit log shipper: the sink\'s cursor does not match this audit log (the log was replaced, or lost records the cursor had passed); delivering again from its first record')
    this.resetPending = null
    this.verify = null
    this.expected = null
    this.ready = []
    this.lastSeq = 0
    await this.closeFile()
    await this.reopen(1)
  }

  private async isRotated(f: OpenFile): Promise<boolean> {
    try {
      return (await stat(this.activePath)).ino !== f.ino
    } catch (err) {
      // Between the rename and the new file's creation the active name is missing: wait.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
  }

  /** Open the file after `f` in chain order; false when there is none yet. */
  private async moveToNextFile(f: OpenFile): Promise<boolean> {
    const files = await logFilesWithInodes(this.activePath)
    const i = files.findIndex((x) => x.ino === f.ino)
    const next = i >= 0 ? files[i + 1] : undefined
    if (next === undefined) {
      // The file we read was removed from the listing (or no newer file yet): find the next record by seq.
      if (i < 0) {
        await this.closeFile()
        return this.reopen(this.expected ?? 1)
      }
      return false
    }
    await this.closeFile()
    return this.openAt(next.path, next.ino)
  }

  /**
   * Open the file holding `seq`: the last file whose first record is at or
   * before it (rotated files are named by their first seq; the active file's
   * first line tells its own). False when the log has no file yet.
   */
  private async reopen(seq: number): Promise<boolean> {
    const files = await logFilesWithInodes(this.activePath)
    if (files.length === 0) return false
    let pick = files[0]!
    for (const x of files) {
      const first = x.firstSeq ?? (await firstSeqOf(x.path))
      if (first !== null && first <= seq) pick = x
    }
    return this.openAt(pick.path, pick.ino)
  }

  private async openAt(path: string, ino: number): Promise<boolean> {
    let fh: FileHandle
    try {
      fh = await open(path, 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
    const st = await fh.stat()
    if (st.ino !== ino) {
      // Rotated between listing and opening: list again next time.
      await fh.close()
      return false
    }
    this.file = { fh, ino, path, offset: 0, partial: Buffer.alloc(0), rotated: false, partialSince: Date.now() }
    return true
  }

  private async closeFile(): Promise<void> {
    const f = this.file
    this.file = null
    await f?.fh.close().catch(() => undefined)
  }

  private startWatching(): void {
    try {
      this.watcher = watch(dirname(this.activePath), { persistent: false }, () => this.wake?.())
      this.watcher.on('error', () => {
        // Polling still works; stop watching.
        this.watcher?.close()
        this.watcher = null
      })
    } catch {
      this.watcher = null
    }
  }

  private async waitForChange(signal: AbortSignal | undefined): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', done)
        this.wake = null
        resolve()
      }
      const timer = setTimeout(done, this.pollMs)
      signal?.addEventListener('abort', done, { once: true })
      this.wake = done
    })
  }
}
