/**
 * `pgwitness verify`: check the hash chain of one audit log, given as one or
 * more files in order (the next file's first record must continue the
 * previous file's last one).
 *
 * Each line must be a JSON object whose `chain` is well-formed, whose
 * chain.hash is the SHA-256 of its canonical JSON without chain.hash, whose
 * text is exactly that canonical JSON (so no JSON parser can read another
 * record out of it), whose chain.seq is the previous seq + 1 and whose
 * chain.prev is the previous chain.hash; the file must end with a newline.
 * The first problem stops the check and is reported with its file, line and
 * reason.
 *
 * The chain alone cannot tell a tail cut off at a line boundary, or a tail
 * rewritten with a recomputed chain, from an intact log: signed checkpoints
 * (a later increment) will.
 *
 * Speed: the file is streamed in large chunks and split by hand. A line is
 * not parsed: a one-pass byte scanner (CanonicalLineScanner) decides that it
 * is canonical JSON with a well-formed chain and finds the chain fields; the
 * hashed text is then the line itself less its `"hash":"…",` member, hashed
 * in place with node:crypto. A line the scanner refuses is checked the long
 * way (JSON.parse, canonicalize, compare), which also says what is wrong.
 * See bench/verify-speed.ts.
 */
import { isUtf8 } from 'node:buffer'
import crypto from 'node:crypto'
import { createReadStream } from 'node:fs'
import type { KeyObject } from 'node:crypto'
import { checkCheckpoint } from './checkpoint.js'
import { checkRecord, GENESIS_HASH, type ChainHead } from './chain.js'
import type { ChainInfo } from '../evidence/types.js'
import { CanonicalLineScanner, HASH_MEMBER_BYTES, type LineChain } from './canonical-scan.js'

export type VerifyReason =
  /** The line is not JSON (or empty, or not UTF-8). */
  | 'invalid_json'
  /** No chain, or a malformed one, or data outside I-JSON. */
  | 'chain_invalid'
  /** The record's content does not hash to its chain.hash: edited. */
  | 'hash_mismatch'
  /** The record hashes right but its line is not its canonical JSON. */
  | 'not_canonical'
  /** seq jumps forward: records missing (deleted, or moved later). */
  | 'seq_gap'
  /** seq repeats or goes back: a record inserted, duplicated or moved earlier. */
  | 'seq_back'
  /** seq is right but prev is not the previous record's hash: a record before it was replaced. */
  | 'prev_mismatch'
  /** The first record of a log (seq 1) must have prev = 64 zeros. */
  | 'bad_genesis'
  /** The last line has no newline: the file was cut mid-record (or a write torn by a crash). */
  | 'truncated'
  /** A checkpoint record is malformed or does not sign the chain head before it. */
  | 'checkpoint_invalid'
  /** A checkpoint's signature does not verify with the public key: forged or altered. */
  | 'signature_invalid'
  /** A checkpoint is signed by a key not among those given. */
  | 'unknown_key'
  /** With --public-key: records after the last valid checkpoint are not covered by a signature. */
  | 'unsigned_tail'
  /** The file could not be read. */
  | 'unreadable'

export interface VerifyFailure {
  file: string
  /** 1-based line number within `file` (0 when the file could not be read). */
  line: number
  reason: VerifyReason
  message: string
}

export interface FileSummary {
  path: string
  records: number
  firstSeq: number | null
  lastSeq: number | null
}

export interface VerifySummary {
  ok: boolean
  /** Records checked and found intact (up to the failure, if any). */
  records: number
  firstSeq: number | null
  lastSeq: number | null
  /** The chain head after the last intact record. */
  head: ChainHead | null
  /** The first record has seq > 1 (accepted with `partial`): the records before it were not checked. */
  startsMidChain: boolean
  /** Checkpoint records found valid (signature checked only when `signaturesChecked`). */
  checkpoints: number
  signaturesChecked: boolean
  /** seq of the last valid checkpoint record (everything up to it is vouched for), or null. */
  signedThrough: number | null
  /** Intact records after the last valid checkpoint (not covered by a signature). */
  unsignedTail: number
  files: FileSummary[]
  failure: VerifyFailure | null
}

function isCheckpointRecord(rec: unknown): rec is { checkpoint?: unknown; proxy?: { instance?: unknown } } {
  return rec !== null && typeof rec === 'object' && (rec as { type?: unknown }).type === 'checkpoint'
}

/** How far past a seq gap to look for the missing record, to tell "moved" from "deleted". */
const GAP_PROBE_LINES = 10_000
const CHUNK = 4 * 1024 * 1024

export interface VerifyOptions {
  /**
   * The first file may start mid-chain (its earlier files, e.g. rotated
   * away, are not at hand): its first record is taken as given. Without it a
   * log must start at seq 1, so records deleted from its start are reported.
   */
  partial?: boolean
  /** Public keys (by key id) to check checkpoint signatures; without them only the chain and checkpoint shapes are checked. */
  publicKeys?: ReadonlyMap<string, KeyObject> | null
  /** With publicKeys: accept records after the last checkpoint (a log still being written, or a crash). */
  allowUnsignedTail?: boolean
  /**
   * Each line as it is read, so a reader (the report) needs no second pass:
   * buf[start, end) is the JSON of its record (without chain.hash when the
   * fast path hashed it in place); `intact` is false from the first problem on.
   * Valid only during the call.
   */
  onLine?: LineSink
  /** With onLine: after the first problem, keep reading the files and hand their lines over (not intact). */
  readPastFailure?: boolean
}

export type LineSink = (buf: Buffer, start: number, end: number, intact: boolean) => void

/** Verify the chain across `paths`, in order. */
export async function verifyChain(paths: readonly string[], opts: VerifyOptions = {}): Promise<VerifySummary> {
  const v = new ChainVerifier(opts.partial === true, opts.publicKeys ?? null, opts.onLine ?? null, opts.onLine !== undefined && opts.readPastFailure === true)
  for (const p of paths) {
    await v.file(p)
    if (v.failure !== null && !opts.readPastFailure) break
  }
  v.end(opts.allowUnsignedTail === true)
  return v.summary()
}

const sha256OfBytes: (b: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (b) => crypto.hash('sha256', b, 'hex')
    : (b) => crypto.createHash('sha256').update(b).digest('hex')


class ChainVerifier {
  failure: VerifyFailure | null = null
  private records = 0
  private firstSeq: number | null = null
  private seq = 0
  private hash = ''
  private started = false
  private startsMidChain = false
  private readonly files: FileSummary[] = []
  private readonly scanner = new CanonicalLineScanner()
  /** A seq gap awaiting the look-ahead that says whether the missing record is further down. */
  private gap: { failure: VerifyFailure; missing: number; linesLeft: number } | null = null

  private checkpoints = 0
  private signedThrough: number | null = null
  /** Where the first record after the last checkpoint is, for an unsigned-tail report. */
  private afterCheckpoint: { file: string; line: number } | null = null

  /** Where the current line's record JSON starts (moved by the in-place hashing of the fast path). */
  private jsonStart = 0

  constructor(
    private readonly partial: boolean,
    private readonly keys: ReadonlyMap<string, KeyObject> | null,
    private readonly onLine: LineSink | null,
    private readonly readPastFailure: boolean,
  ) {}

  /** After the last file: with public keys, every record must be covered by a checkpoint. */
  end(allowUnsignedTail: boolean): void {
    if (this.failure !== null || this.keys === null || allowUnsignedTail || this.unsignedTail() === 0) return
    const at = this.afterCheckpoint!
    const n = this.unsignedTail()
    this.failure = {
      file: at.file,
      line: at.line,
      reason: 'unsigned_tail',
      message: `${n} record(s) from this line on${this.signedThrough === null ? ' (the whole log: it has no checkpoint)' : ` (after the checkpoint at seq ${this.signedThrough})`} are not covered by a signed checkpoint: ` +
        'they may have been rewritten with a recomputed chain. A cleanly stopped proxy ends its log with a checkpoint; a log still being written or cut by a crash ends unsigned — use --allow-unsigned-tail to accept that',
    }
  }

  private unsignedTail(): number {
    if (!this.started) return 0
    return this.seq - (this.signedThrough ?? (this.firstSeq! - 1))
  }

  summary(): VerifySummary {
    return {
      ok: this.failure === null,
      records: this.records,
      firstSeq: this.firstSeq,
      lastSeq: this.started ? this.seq : null,
      head: this.started ? { seq: this.seq, hash: this.hash } : null,
      startsMidChain: this.startsMidChain,
      checkpoints: this.checkpoints,
      signaturesChecked: this.keys !== null,
      signedThrough: this.signedThrough,
      unsignedTail: this.unsignedTail(),
      files: this.files,
      failure: this.failure,
    }
  }

  async file(path: string): Promise<void> {
    const fs: FileSummary = { path, records: 0, firstSeq: null, lastSeq: null }
    this.files.push(fs)
    // Bytes of a line that spans chunks, copied.
    let carry: Buffer[] = []
    let carryBytes = 0
    let lineNo = 0
    const scanner = this.scanner
    // The stream reads ahead while lines are checked.
    const stream = createReadStream(path, { highWaterMark: CHUNK })
    const done = () => this.failure !== null && this.gap === null && !this.readPastFailure
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        let start = 0
        if (carryBytes > 0) {
          const nl = chunk.indexOf(10)
          if (nl < 0) {
            carry.push(Buffer.from(chunk))
            carryBytes += chunk.length
            continue
          }
          carry.push(chunk.subarray(0, nl))
          const line = Buffer.concat(carry)
          carry = []
          carryBytes = 0
          const fast = this.gap === null && this.failure === null ? scanner.scan(line, 0, line.length) : null
          this.line(line, 0, line.length, fast, path, ++lineNo, fs)
          if (done()) return
          start = nl + 1
        }
        const len = chunk.length
        while (start < len) {
          let end: number
          let fast: LineChain | null = null
          end = chunk.indexOf(10, start)
          if (end < 0) break
          if (this.gap === null && this.failure === null) fast = scanner.scan(chunk, start, end)
          this.line(chunk, start, end, fast, path, ++lineNo, fs)
          if (done()) return
          start = end + 1
        }
        if (start < len) {
          carry.push(Buffer.from(chunk.subarray(start)))
          carryBytes += len - start
        }
      }
    } catch (err) {
      this.failure ??= { file: path, line: 0, reason: 'unreadable', message: `cannot read ${path}: ${(err as Error).message}` }
      return
    } finally {
      stream.destroy()
    }
    this.gap = null
    if (carryBytes > 0 && this.failure === null) {
      this.failure = {
        file: path,
        line: lineNo + 1,
        reason: 'truncated',
        message: `the last line is incomplete (${carryBytes} bytes without a newline): the file was cut off mid-record, or a write was torn by a crash`,
      }
    }
  }

  private fail(path: string, line: number, reason: VerifyReason, message: string): void {
    this.failure = { file: path, line, reason, message }
  }

  /** One line: checked while the log is intact (or a gap is being probed), then handed to onLine. */
  private line(buf: Buffer, start: number, end: number, fast: LineChain | null, path: string, lineNo: number, fs: FileSummary): void {
    const intact = this.failure === null
    this.jsonStart = start
    if (intact || this.gap !== null) this.check(buf, start, end, fast, path, lineNo, fs)
    this.onLine?.(buf, this.jsonStart, end, intact && this.failure === null)
  }

  /**
   * Check one line: buf[start, end), without its newline; `fast` if the scanner
   * found it canonical with a well-formed chain. May modify those bytes.
   */
  private check(buf: Buffer, start: number, end: number, fast: LineChain | null, path: string, lineNo: number, fs: FileSummary): void {
    if (this.gap !== null) return this.probeGap(buf.toString('utf8', start, end), lineNo)
    let c: LineChain
    let rec: unknown = null
    if (fast !== null) {
      // The hashed text is the line without its `"hash":"…",` member. Shift
      // what precedes that member over it and hash the bytes in place.
      const q = this.scanner.chainAt
      buf.copyWithin(start + HASH_MEMBER_BYTES, start, q + 1)
      this.jsonStart = start + HASH_MEMBER_BYTES
      const actual = sha256OfBytes(buf.subarray(start + HASH_MEMBER_BYTES, end))
      if (actual !== fast.hash) {
        return this.fail(path, lineNo, 'hash_mismatch', `chain.hash is ${fast.hash.slice(0, 12)}… but the record hashes to ${actual.slice(0, 12)}…: the record was altered after it was written`)
      }
      c = fast
      // Checkpoints (the scanner noticed the top-level type) are parsed; the hashed text is valid JSON too.
      if (this.scanner.checkpoint) rec = JSON.parse(buf.toString('utf8', start + HASH_MEMBER_BYTES, end))
    } else {
      // Not provably canonical by the scanner: check it the long way, which also says what is wrong.
      const bytes = buf.subarray(start, end)
      if (end === start) return this.fail(path, lineNo, 'invalid_json', 'empty line')
      if (!isUtf8(bytes)) return this.fail(path, lineNo, 'invalid_json', 'not valid UTF-8')
      const text = bytes.toString('utf8')
      try {
        rec = JSON.parse(text)
      } catch (err) {
        return this.fail(path, lineNo, 'invalid_json', `not valid JSON (${(err as Error).message})`)
      }
      const bad = checkRecord(rec, text)
      if (bad !== null) return this.fail(path, lineNo, bad.kind, bad.detail)
      c = (rec as { chain: ChainInfo }).chain
    }
    if (!this.started) {
      if (c.seq === 1 && c.prev !== GENESIS_HASH) {
        return this.fail(path, lineNo, 'bad_genesis', 'the first record of the log (seq 1) must have chain.prev = 64 zeros')
      }
      if (c.seq > 1 && !this.partial) {
        const n = c.seq - 1
        return this.fail(path, lineNo, 'seq_gap',
          `expected seq 1, found ${c.seq}: ${n === 1 ? 'record 1 is' : `records 1..${n} are`} missing (deleted from the start of the log), ` +
          'or this file continues an earlier file: give the earlier files first, or --partial to check from this record on')
      }
      this.started = true
      this.startsMidChain = c.seq > 1
      this.firstSeq = c.seq
    } else if (c.seq !== this.seq + 1) {
      const expected = this.seq + 1
      if (c.seq > expected) {
        const n = c.seq - expected
        this.fail(path, lineNo, 'seq_gap', `expected seq ${expected}, found ${c.seq}: ${n === 1 ? `record ${expected} is` : `records ${expected}..${c.seq - 1} are`} missing here (deleted)`)
        this.gap = { failure: this.failure!, missing: expected, linesLeft: GAP_PROBE_LINES }
        return
      }
      return this.fail(path, lineNo, 'seq_back', `expected seq ${expected}, found ${c.seq} again: a record was inserted before this line, or this one duplicated or moved here`)
    } else if (c.prev !== this.hash) {
      return this.fail(path, lineNo, 'prev_mismatch', `chain.prev is not the previous record's chain.hash: the record before this line (seq ${this.seq}) was replaced, or one was inserted`)
    }
    if (isCheckpointRecord(rec)) {
      const problem = this.checkpoint(rec, c)
      if (problem !== null) return this.fail(path, lineNo, problem.reason, problem.detail)
    }
    if (this.signedThrough === c.seq) this.afterCheckpoint = null
    else this.afterCheckpoint ??= { file: path, line: lineNo }
    this.seq = c.seq
    this.hash = c.hash
    this.records++
    fs.records++
    fs.firstSeq ??= c.seq
    fs.lastSeq = c.seq
  }

  /**
   * A checkpoint record: its JWS must be well-formed (and, with keys, verify)
   * and sign the chain head just before it. A checkpoint that is the first
   * record checked (--partial) cannot be compared with a head it does not know.
   */
  private checkpoint(rec: { checkpoint?: unknown; proxy?: { instance?: unknown } }, c: LineChain): { reason: VerifyReason; detail: string } | null {
    const check = checkCheckpoint(rec.checkpoint, this.keys)
    if (!check.ok) return { reason: check.reason, detail: check.detail }
    const p = check.payload
    if (p.instance !== rec.proxy?.instance) return { reason: 'checkpoint_invalid', detail: `the checkpoint is for instance ${JSON.stringify(p.instance)} but the record is from ${JSON.stringify(rec.proxy?.instance)}` }
    if (this.started && (p.seq !== this.seq || p.hash !== this.hash)) {
      return {
        reason: 'checkpoint_invalid',
        detail: `the checkpoint signs seq ${p.seq} with hash ${p.hash.slice(0, 12)}…, but the chain before it ends at seq ${this.seq} with hash ${this.hash.slice(0, 12)}…: ` +
          'the records before it were rewritten (the chain recomputed) after they were signed',
      }
    }
    this.checkpoints++
    this.signedThrough = c.seq
    return null
  }

  /** After a seq gap: is the "missing" record further down (moved), or gone (deleted)? */
  private probeGap(text: string, lineNo: number): void {
    const g = this.gap!
    try {
      const seq = (JSON.parse(text) as { chain?: { seq?: unknown } }).chain?.seq
      if (seq === g.missing) {
        g.failure.message = `expected seq ${g.missing}, found a later record: record ${g.missing} is at line ${lineNo} (records reordered)`
        this.gap = null
        return
      }
    } catch {
      // not a record: keep looking
    }
    if (--g.linesLeft <= 0) this.gap = null
  }
}

/** Human summary of a result, for the CLI. */
export function formatSummary(s: VerifySummary): string {
  const lines: string[] = []
  if (s.files.length > 1) {
    for (const f of s.files) {
      lines.push(`  ${f.path}: ${f.records} record(s)${f.firstSeq !== null ? `, seq ${f.firstSeq}..${f.lastSeq}` : ''}`)
    }
  }
  if (s.failure !== null && s.failure.reason === 'unreadable') {
    return `CANNOT VERIFY: ${s.failure.message}`
  }
  if (s.failure !== null) {
    const f = s.failure
    lines.unshift(`${f.file}:${f.line}: ${f.reason.replaceAll('_', ' ')}: ${f.message}`)
    lines.push(`NOT INTACT: ${s.records} record(s) before line ${f.line} of ${f.file} are intact${s.lastSeq !== null ? ` (seq ${s.firstSeq}..${s.lastSeq})` : ''}`)
    return lines.join('\n')
  }
  const range = s.records === 0 ? 'no records' : `${s.records} record(s), seq ${s.firstSeq}..${s.lastSeq}`
  lines.unshift(`${s.files.length === 1 ? s.files[0]!.path : `${s.files.length} files`}: ${range}, intact`)
  if (s.startsMidChain) lines.push(`note: --partial: the chain starts at seq ${s.firstSeq}; the records before it were not checked`)
  if (s.signaturesChecked) {
    lines.push(`${s.checkpoints} signed checkpoint(s) verified${s.signedThrough !== null ? `; signed through seq ${s.signedThrough}` : ''}` +
      (s.unsignedTail > 0 ? `; ${s.unsignedTail} record(s) after it are not covered by a signature (accepted with --allow-unsigned-tail)` : ''))
  } else if (s.checkpoints > 0) {
    lines.push(`note: ${s.checkpoints} checkpoint(s) found but their signatures were NOT checked: give --public-key to detect a tail rewritten with a recomputed chain`)
  } else {
    lines.push('note: no signed checkpoints checked: the chain alone cannot show a tail cut off at a line boundary or rewritten with a recomputed chain')
  }
  return lines.join('\n')
}
