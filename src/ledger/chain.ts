/**
 * The audit log's hash chain (see "Integrity" in the record contract):
 *
 *   chain.seq   consecutive per log, from 1
 *   chain.prev  the previous record's chain.hash; 64 zeros for the first
 *   chain.hash  SHA-256 (lowercase hex) of the RFC 8785 canonical JSON of the
 *               record with chain.hash removed (chain.seq and chain.prev in)
 *
 * The writer writes each record as its canonical JSON (with chain.hash), so
 * a line of the log is byte for byte the canonical form of its record, and
 * the text that was hashed is that line without the `"hash":"…",` member.
 * `pgwitness verify` (verify.ts) insists on that: a line that parses to the
 * right record but is not its canonical form (duplicate names, reordered
 * members, whitespace) is reported, so every JSON parser reads the same
 * record out of a verified line.
 *
 * The chain alone proves order and completeness only relative to its last
 * record: whoever can rewrite the file can recompute the chain of a
 * rewritten tail. Signed checkpoints (a later increment) close that gap.
 */
import crypto from 'node:crypto'
import type { FileHandle } from 'node:fs/promises'
import { canonicalMembers, CanonicalJsonError, flatCopy, toIJson } from './canonical-json.js'
import type { AuditRecord, AuditRecordBody, ChainInfo } from '../evidence/types.js'

/** chain.prev of the first record of a log. */
export const GENESIS_HASH = '0'.repeat(64)

/** Where a chain stands: the last record's seq and hash (seq 0 and GENESIS_HASH before the first). */
export interface ChainHead {
  readonly seq: number
  readonly hash: string
}

export const EMPTY_HEAD: ChainHead = Object.freeze({ seq: 0, hash: GENESIS_HASH })

const HEX64 = /^[0-9a-f]{64}$/

export function isHex64(v: unknown): v is string {
  return typeof v === 'string' && v.length === 64 && HEX64.test(v)
}

export function isChainSeq(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1
}

/** SHA-256, lowercase hex, of a string's UTF-8 bytes (one-shot crypto.hash where Node has it: 20.12+). */
export const sha256Hex: (data: string) => string =
  typeof crypto.hash === 'function'
    ? (data) => crypto.hash('sha256', data, 'hex')
    : (data) => crypto.createHash('sha256').update(data, 'utf8').digest('hex')

/**
 * A record's canonical members other than `chain`, split around where
 * `chain` sorts: `before` and `after` are comma-joined `"name":value` texts.
 */
export interface RecordParts {
  before: string
  after: string
}

/** Serialize the members of a record (any `chain` member is skipped). Throws CanonicalJsonError. */
export function recordParts(rec: Readonly<Record<string, unknown>>): RecordParts {
  return recordPartsWith(NOTHING_SHARED, rec)
}

const NOTHING_SHARED: SharedMembers = { object: {}, members: [] }

/**
 * Members many records share (those of one session), serialized once:
 * [name, `"name":value`] pairs in canonical order. A record sealed with them
 * is the record {...object, ...own}, member for member.
 */
export interface SharedMembers {
  readonly object: Readonly<Record<string, unknown>>
  readonly members: SerializedMembers
}

/** `obj`'s members serialized for sharing; null when they are not I-JSON (its records then take the full path, which sanitizes). */
export function shareMembers(obj: Readonly<Record<string, unknown>>): SharedMembers | null {
  try {
    // Kept as long as the session: flat texts, not ropes (flatCopy).
    const members = canonicalMembers(obj as Record<string, unknown>).filter(([k]) => k !== 'chain').map(([k, m]) => [k, flatCopy(m)] as const)
    return { object: obj, members }
  } catch (err) {
    if (err instanceof CanonicalJsonError) return null
    throw err
  }
}

/** Members serialized, in canonical order: [name, `"name":value`] pairs (what canonicalMembers returns). */
export type SerializedMembers = ReadonlyArray<readonly [string, string]>

/**
 * Serializes a record's own members faster than the generic walk, for one
 * known record shape (statement-members.ts): must return exactly
 * canonicalMembers(own), or throw CanonicalJsonError as it does (sealing
 * then takes the sanitizing path).
 */
export type OwnSerializer<T> = (own: T) => SerializedMembers

/**
 * recordParts({...shared.object, ...own}) without serializing the shared
 * members again (a name in both is own's). `ownMembers`: own's members
 * already serialized (exactly canonicalMembers(own)), e.g. by
 * statement-members.ts.
 */
export function recordPartsWith(shared: SharedMembers, own: Readonly<Record<string, unknown>>, ownMembers?: SerializedMembers): RecordParts {
  const mine = ownMembers ?? canonicalMembers(own as Record<string, unknown>)
  const theirs = shared.members
  let before = ''
  let after = ''
  let i = 0
  let j = 0
  while (i < mine.length || j < theirs.length) {
    let k: string
    let m: string
    if (j >= theirs.length || (i < mine.length && mine[i]![0] <= theirs[j]![0])) {
      ;[k, m] = mine[i++]!
      if (j < theirs.length && theirs[j]![0] === k) j++ // own's member replaces the shared one
    } else {
      ;[k, m] = theirs[j++]!
    }
    if (k === 'chain') continue
    // Members come in canonical order; 'chain' < k compares UTF-16 code units too.
    if (k < 'chain') before = before === '' ? m : before + ',' + m
    else after = after === '' ? m : after + ',' + m
  }
  return { before, after }
}

function assemble(p: RecordParts, chain: string): string {
  return '{' + (p.before === '' ? '' : p.before + ',') + chain + (p.after === '' ? '' : ',' + p.after) + '}'
}

/** The text chain.hash is computed over: the canonical record with chain.hash removed. */
export function hashedText(p: RecordParts, seq: number, prev: string): string {
  // seq is a safe positive integer and prev 64 hex digits: their JCS forms need no escaping.
  return assemble(p, `"chain":{"prev":"${prev}","seq":${seq}}`)
}

/** The canonical JSON of the complete record (what a log line holds, without its newline). */
export function canonicalLine(p: RecordParts, chain: ChainInfo): string {
  return assemble(p, `"chain":{"hash":"${chain.hash}","prev":"${chain.prev}","seq":${chain.seq}}`)
}

/** Where `"hash":"…",` goes into the hashed text: right after `"chain":{`. */
function hashAt(p: RecordParts): number {
  return (p.before === '' ? 1 : p.before.length + 2) + '"chain":{'.length
}

/** `"hash":"<64 hex>",`: what the line has that the hashed text does not. */
const HASH_MEMBER_CHARS = '"hash":"'.length + 64 + '",'.length

/** A record with its chain and the line to write for it (canonical JSON, no newline). */
export interface SealedRecord {
  readonly chain: ChainInfo
  readonly line: string
  /** The record as an object (made on first use: writers need only the line and the chain). */
  readonly record: AuditRecord
}

class Sealed implements SealedRecord {
  private made: AuditRecord | null = null
  private joined: string | null = null
  constructor(
    private readonly body: Record<string, unknown>,
    private readonly shared: SharedMembers | null,
    readonly chain: ChainInfo,
    /** The text chain.hash was computed over (one flat string: hashing flattened it). */
    readonly hashed: string,
    /** Where `"hash":"…",` goes into it. */
    readonly at: number,
    readonly sanitized: boolean,
  ) {}

  /**
   * canonicalLine(parts, chain), cut from the text that was hashed: the
   * same characters with `"hash":"…",` in front of `"prev"`. Made on first
   * use: the file log writes the line's bytes straight from the hashed
   * text (lineInto) and never needs it as one string.
   */
  get line(): string {
    return (this.joined ??= this.hashed.slice(0, this.at) + '"hash":"' + this.chain.hash + '",' + this.hashed.slice(this.at))
  }

  get record(): AuditRecord {
    return (this.made ??= { ...this.shared?.object, ...this.body, chain: this.chain } as unknown as AuditRecord)
  }
}

/** A sealed record's line length in UTF-16 code units (what `line.length` is), without making the line. */
export function lineLength(s: SealedRecord): number {
  return s instanceof Sealed ? s.hashed.length + HASH_MEMBER_CHARS : s.line.length
}

/** The most bytes lineInto can write for `s`: UTF-8 takes at most 3 bytes per UTF-16 code unit, plus the newline. */
export function maxLineBytes(s: SealedRecord): number {
  return 3 * lineLength(s) + 1
}

/**
 * Write `s.line` and a newline into `buf` at `off` as UTF-8; returns the
 * offset after them. `buf` must have maxLineBytes(s) bytes free. The line
 * is written in three pieces from the hashed text, so it is never joined
 * into one more string (a copy of ~1.7 KB per record).
 */
export function lineInto(s: SealedRecord, buf: Buffer, off: number): number {
  let o = off
  if (s instanceof Sealed) {
    const { hashed, at } = s
    o += buf.write(hashed.slice(0, at), o, 'utf8')
    o += buf.write('"hash":"' + s.chain.hash + '",', o, 'latin1')
    o += buf.write(hashed.slice(at), o, 'utf8')
  } else {
    o += buf.write(s.line, o, 'utf8')
  }
  buf[o] = 0x0a
  return o + 1
}

/**
 * Assigns chain fields to records in the order they are sealed. One per log:
 * whoever writes the log seals every record through it, synchronously, in
 * write order.
 */
export class AuditChain {
  private seq: number
  private hash: string

  constructor(head: ChainHead = EMPTY_HEAD) {
    this.seq = head.seq
    this.hash = head.hash
  }

  get head(): ChainHead {
    return { seq: this.seq, hash: this.hash }
  }

  /**
   * Chain the next record. A body that is not I-JSON (a lone surrogate in a
   * token claim, a non-finite number) is recorded as its I-JSON copy (U+FFFD,
   * null) rather than refused; `sanitized` says so.
   */
  seal(body: AuditRecordBody): SealedRecord & { sanitized: boolean }
  /**
   * Chain the record {...shared.object, ...own}, serializing only `own`'s
   * members (with `serializeOwn` when given).
   */
  seal<T extends Readonly<Record<string, unknown>>>(own: T, shared: SharedMembers | null, serializeOwn?: OwnSerializer<T>): SealedRecord & { sanitized: boolean }
  seal(body: Readonly<Record<string, unknown>>, shared: SharedMembers | null = null, serializeOwn?: OwnSerializer<Readonly<Record<string, unknown>>>): SealedRecord & { sanitized: boolean } {
    let sanitized = false
    let rec: Record<string, unknown> = body as Record<string, unknown>
    let parts: RecordParts
    try {
      parts = shared === null ? recordParts(rec) : recordPartsWith(shared, rec, serializeOwn?.(rec))
    } catch (err) {
      if (!(err instanceof CanonicalJsonError)) throw err
      rec = toIJson(shared === null ? rec : { ...shared.object, ...rec }) as Record<string, unknown>
      shared = null
      parts = recordParts(rec)
      sanitized = true
    }
    const seq = this.seq + 1
    const prev = this.hash
    const hashed = hashedText(parts, seq, prev)
    const hash = sha256Hex(hashed)
    const chain: ChainInfo = { seq, prev, hash }
    this.seq = seq
    this.hash = hash
    return new Sealed(rec, shared, chain, hashed, hashAt(parts), sanitized)
  }
}

/** Why a line is not a well-formed chained record (null when it is). */
export function chainShapeProblem(chain: unknown): string | null {
  if (chain === undefined) return 'the record has no "chain"'
  if (chain === null || typeof chain !== 'object' || Array.isArray(chain)) return '"chain" is not an object'
  const c = chain as Record<string, unknown>
  const extra = Object.keys(c).filter((k) => k !== 'seq' && k !== 'prev' && k !== 'hash')
  if (extra.length > 0) return `"chain" has unexpected member(s): ${extra.join(', ')}`
  if (!isChainSeq(c['seq'])) return '"chain.seq" is not a positive integer'
  if (!isHex64(c['prev'])) return '"chain.prev" is not 64 lowercase hex digits'
  if (!isHex64(c['hash'])) return '"chain.hash" is not 64 lowercase hex digits'
  return null
}

/**
 * Check one parsed record on its own: its chain shape, that chain.hash is
 * the hash of its content, and (given its line text) that the line is the
 * record's canonical form. Returns null or what is wrong.
 */
export function checkRecord(rec: unknown, line?: string): { kind: 'chain_invalid' | 'hash_mismatch' | 'not_canonical'; detail: string } | null {
  if (rec === null || typeof rec !== 'object' || Array.isArray(rec)) return { kind: 'chain_invalid', detail: 'not a JSON object' }
  const chain = (rec as { chain?: unknown }).chain
  const shape = chainShapeProblem(chain)
  if (shape !== null) return { kind: 'chain_invalid', detail: shape }
  const c = chain as ChainInfo
  let parts: RecordParts
  try {
    parts = recordParts(rec as Record<string, unknown>)
  } catch (err) {
    return { kind: 'chain_invalid', detail: `not I-JSON: ${(err as Error).message}` }
  }
  const actual = sha256Hex(hashedText(parts, c.seq, c.prev))
  if (actual !== c.hash) return { kind: 'hash_mismatch', detail: `chain.hash is ${c.hash.slice(0, 12)}… but the record hashes to ${actual.slice(0, 12)}…: the record was altered after it was written` }
  if (line !== undefined && canonicalLine(parts, c) !== line) {
    return { kind: 'not_canonical', detail: 'the line is not the canonical JSON of its record (duplicate or reordered members, whitespace or escapes changed): its text differs from what was written' }
  }
  return null
}

// ---- continuing a log -------------------------------------------------------

/** The end of an existing log file, as FileAuditSink needs it to continue the chain. */
export interface LogTail {
  /** Head of the chain: the last complete record's seq and hash (EMPTY_HEAD for an empty file). */
  head: ChainHead
  /** File size. */
  size: number
  /**
   * Bytes after the last newline (a write torn by a crash), or null when the
   * file ends with a newline. `complete`: the fragment is a whole record
   * continuing the chain that lost only its newline (it is the head then).
   */
  torn: { offset: number; length: number; complete: boolean } | null
}

export class LogTailError extends Error {
  override readonly name = 'LogTailError'
}

const TAIL_CHUNK = 64 * 1024

/** Offset of the last '\n' in [0, end), reading backwards in chunks; -1 if none. */
async function lastNewline(fh: FileHandle, end: number): Promise<number> {
  const buf = Buffer.allocUnsafe(TAIL_CHUNK)
  let pos = end
  while (pos > 0) {
    const start = Math.max(0, pos - TAIL_CHUNK)
    const { bytesRead } = await fh.read(buf, 0, pos - start, start)
    const i = buf.subarray(0, bytesRead).lastIndexOf(10)
    if (i >= 0) return start + i
    pos = start
  }
  return -1
}

async function readRange(fh: FileHandle, start: number, end: number): Promise<Buffer> {
  const buf = Buffer.alloc(end - start)
  let off = 0
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off)
    if (bytesRead === 0) break
    off += bytesRead
  }
  return buf.subarray(0, off)
}

/**
 * Read the end of a log (only its last lines, not the whole file) to find the
 * chain head. The last complete line must be a chained record (else
 * LogTailError: the chain cannot be continued, and silently starting a new one
 * mid-file would make the file unverifiable). A last line without its
 * newline is reported in `torn`; if that fragment is in fact a complete
 * record that continues the chain (the write stopped just before the
 * newline), it counts as the head and `torn.complete` is true.
 */
export async function readLogTail(fh: FileHandle, path: string): Promise<LogTail> {
  const { size } = await fh.stat()
  if (size === 0) return { head: EMPTY_HEAD, size, torn: null }
  const last = await lastNewline(fh, size)
  let torn: LogTail['torn'] = last === size - 1 ? null : { offset: last + 1, length: size - last - 1, complete: false }
  let head: ChainHead = EMPTY_HEAD
  if (last >= 0) {
    const prevNl = await lastNewline(fh, last)
    const text = (await readRange(fh, prevNl + 1, last)).toString('utf8')
    head = headOf(text, path, 'its last line')
  }
  if (torn !== null) {
    // A fragment that is a whole record continuing the chain lost only its newline.
    const text = (await readRange(fh, torn.offset, size)).toString('utf8')
    let rec: unknown
    try {
      rec = JSON.parse(text)
    } catch {
      rec = undefined
    }
    if (rec !== undefined && checkRecord(rec, text) === null) {
      const c = (rec as { chain: ChainInfo }).chain
      if (c.seq === head.seq + 1 && c.prev === head.hash) {
        head = { seq: c.seq, hash: c.hash }
        torn = { ...torn, complete: true }
      }
    }
  }
  return { head, size, torn }
}

function headOf(text: string, path: string, what: string): ChainHead {
  let rec: unknown
  try {
    rec = JSON.parse(text)
  } catch (err) {
    throw new LogTailError(`audit log ${path}: ${what} is not valid JSON (${(err as Error).message}); the chain cannot be continued. Run "pgwitness verify ${path}", then move the file aside to start a new log`)
  }
  const chain = rec !== null && typeof rec === 'object' ? (rec as { chain?: unknown }).chain : undefined
  const problem = chainShapeProblem(chain)
  if (problem !== null) {
    throw new LogTailError(
      `audit log ${path}: ${what} is not a chained record (${problem}; a log written before hash chaining?); ` +
        'the chain cannot be continued. Move the file aside to start a new log',
    )
  }
  const c = chain as ChainInfo
  return { seq: c.seq, hash: c.hash }
}
