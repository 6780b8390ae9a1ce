import type { Logger } from 'pino'
import { AuditChain, EMPTY_HEAD, type ChainHead, type OwnSerializer, type SealedRecord, type SharedMembers } from './chain.js'
import { signCheckpoint, type CheckpointSigningKey } from './checkpoint.js'
import { checkpointRecord } from '../evidence/records.js'
import type { AuditRecordBody, ProxyInfo } from '../evidence/types.js'
import { rfc3339Micros } from '../util/time.js'

// The file writer lives in its own module; it is part of this module's interface.
export { FileAuditSink, type RotationPolicy } from './file-log.js'

/**
 * Where the proxy appends audit records. It appends records without `chain`
 * (AuditRecordBody); the AuditChainer behind it seals each one (chain.seq,
 * chain.prev, chain.hash; see chain.ts) and hands the same sealed record to
 * every writer, so the file and stdout carry identical lines.
 */
export interface AuditSink {
  /** Seal and queue a record; returns its chain.seq (0 when audit is disabled). */
  append(record: AuditRecordBody): number
  /**
   * append({...shared.object, ...own}), serializing only `own`'s members
   * (see shareMembers), with `serializeOwn` when given (see OwnSerializer).
   * Optional: without it, callers append the whole record.
   */
  appendShared?<T extends Readonly<Record<string, unknown>>>(own: T, shared: SharedMembers, serializeOwn?: OwnSerializer<T>): number
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
  /** The file is due to rotate (size or age): the chainer checkpoints, then calls rotate(). */
  rotationDue?(): boolean
  /** Rotate after the records written so far. */
  rotate?(): void
}

/** When the chainer signs the chain head (see checkpoint.ts). */
export interface CheckpointSchedule {
  key: CheckpointSigningKey
  proxy: ProxyInfo
  everyRecords: number
  everySeconds: number
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
  /** Records sealed since the last checkpoint. */
  private unsigned = 0
  private timer: NodeJS.Timeout | null = null

  constructor(
    private readonly writer: AuditRecordWriter,
    head: ChainHead = EMPTY_HEAD,
    private readonly log?: Logger,
    private readonly checkpoints: CheckpointSchedule | null = null,
  ) {
    this.chain = new AuditChain(head)
    // Time-based checkpoints and rotation also happen when no records arrive.
    const tickMs = Math.min(checkpoints ? checkpoints.everySeconds * 1000 : 1000, 1000)
    if (checkpoints || writer.rotationDue) {
      let elapsed = 0
      this.timer = setInterval(() => {
        elapsed += tickMs
        if (this.closed) return
        if (this.checkpoints && this.unsigned > 0 && elapsed >= this.checkpoints.everySeconds * 1000) {
          elapsed = 0
          this.checkpoint()
        }
        this.rotateIfDue()
      }, tickMs)
      this.timer.unref()
    }
  }

  /** The last sealed record's seq and hash (for checkpoints). */
  get head(): ChainHead {
    return this.chain.head
  }

  /** Key id of the checkpoint signing key, or null when checkpoints are off. */
  get checkpointKeyId(): string | null {
    return this.checkpoints?.key.keyId ?? null
  }

  append(record: AuditRecordBody): number {
    return this.appendShared(record, null)
  }

  appendShared<T extends Readonly<Record<string, unknown>>>(record: T, shared: SharedMembers | null, serializeOwn?: OwnSerializer<T>): number {
    // Refuse before sealing: a sealed record that is not written would leave a gap in the chain.
    if (this.closed) throw new Error('audit log is closed')
    const seq = this.seal(record, shared, serializeOwn)
    this.unsigned++
    if (this.checkpoints && this.unsigned >= this.checkpoints.everyRecords) this.checkpoint()
    this.rotateIfDue()
    return seq
  }

  private seal<T extends Readonly<Record<string, unknown>>>(record: T, shared: SharedMembers | null = null, serializeOwn?: OwnSerializer<T>): number {
    const sealed = this.chain.seal(record, shared, serializeOwn)
    if (sealed.sanitized) {
      this.log?.warn({ seq: sealed.chain.seq, type: record['type'], id: record['id'] },
        'audit record held data that is not I-JSON (lone surrogate or non-finite number); recorded with U+FFFD / null in its place')
    }
    this.writer.write(sealed)
    return sealed.chain.seq
  }

  /** Sign the current head and append the checkpoint record (a no-op without a key). */
  private checkpoint(): void {
    if (!this.checkpoints) return
    const cp = signCheckpoint(this.checkpoints.key, this.chain.head, this.checkpoints.proxy.instance, rfc3339Micros())
    this.seal(checkpointRecord(this.checkpoints.proxy, cp))
    this.unsigned = 0
  }

  /** Each rotated file ends with a checkpoint, so it can be verified (and archived) on its own. */
  private rotateIfDue(): void {
    if (!this.writer.rotationDue?.()) return
    if (this.unsigned > 0) this.checkpoint()
    this.writer.rotate!()
  }

  flush(): Promise<void> {
    return this.writer.flush()
  }

  async close(): Promise<void> {
    if (!this.closed && this.unsigned > 0) this.checkpoint()
    this.closed = true
    if (this.timer) clearInterval(this.timer)
    await this.writer.close()
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
  rotationDue(): boolean {
    return this.sinks.some((s) => s.rotationDue?.() === true)
  }
  rotate(): void {
    for (const s of this.sinks) s.rotate?.()
  }
}

/** Audit disabled (benchmarks of the bare relay only): records go nowhere. */
export class DisabledAuditSink implements AuditSink {
  append(): number {
    return 0
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
