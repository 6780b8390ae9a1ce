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
import { checkRecord, GENESIS_HASH, type ChainHead } from './chain.js'
import type { ChainInfo } from './types.js'

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
  files: FileSummary[]
  failure: VerifyFailure | null
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
}

/** Verify the chain across `paths`, in order. */
export async function verifyChain(paths: readonly string[], opts: VerifyOptions = {}): Promise<VerifySummary> {
  const v = new ChainVerifier(opts.partial === true)
  for (const p of paths) {
    await v.file(p)
    if (v.failure !== null) break
  }
  return v.summary()
}

const sha256OfBytes: (b: Uint8Array) => string =
  typeof crypto.hash === 'function'
    ? (b) => crypto.hash('sha256', b, 'hex')
    : (b) => crypto.createHash('sha256').update(b).digest('hex')

/** The chain fields of one line, read by whichever path checked it. */
interface LineChain {
  seq: number
  prev: string
  hash: string
}

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

  constructor(private readonly partial: boolean) {}

  summary(): VerifySummary {
    return {
      ok: this.failure === null,
      records: this.records,
      firstSeq: this.firstSeq,
      lastSeq: this.started ? this.seq : null,
      head: this.started ? { seq: this.seq, hash: this.hash } : null,
      startsMidChain: this.startsMidChain,
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
    const done = () => this.failure !== null && this.gap === null
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
          const fast = this.gap === null ? scanner.scan(line, 0, line.length) : null
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
          if (this.gap === null) fast = scanner.scan(chunk, start, end)
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

  /**
   * One line: buf[start, end), without its newline; `fast` if the scanner
   * found it canonical with a well-formed chain. May modify those bytes.
   */
  private line(buf: Buffer, start: number, end: number, fast: LineChain | null, path: string, lineNo: number, fs: FileSummary): void {
    if (this.gap !== null) return this.probeGap(buf.toString('utf8', start, end), lineNo)
    let c: LineChain
    if (fast !== null) {
      // The hashed text is the line without its `"hash":"…",` member. Shift
      // what precedes that member over it and hash the bytes in place.
      const q = this.scanner.chainAt
      buf.copyWithin(start + HASH_MEMBER_BYTES, start, q + 1)
      const actual = sha256OfBytes(buf.subarray(start + HASH_MEMBER_BYTES, end))
      if (actual !== fast.hash) {
        return this.fail(path, lineNo, 'hash_mismatch', `chain.hash is ${fast.hash.slice(0, 12)}… but the record hashes to ${actual.slice(0, 12)}…: the record was altered after it was written`)
      }
      c = fast
    } else {
      // Not provably canonical by the scanner: check it the long way, which also says what is wrong.
      const bytes = buf.subarray(start, end)
      if (end === start) return this.fail(path, lineNo, 'invalid_json', 'empty line')
      if (!isUtf8(bytes)) return this.fail(path, lineNo, 'invalid_json', 'not valid UTF-8')
      const text = bytes.toString('utf8')
      let rec: unknown
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
    this.seq = c.seq
    this.hash = c.hash
    this.records++
    fs.records++
    fs.firstSeq ??= c.seq
    fs.lastSeq = c.seq
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

// ---- the fast path ------------------------------------------------------------

/** `"hash":"` + 64 hex digits + `",`: what the hashed text lacks. */
const HASH_MEMBER_BYTES = 8 + 64 + 2
const MAX_DEPTH = 200

const Q = 0x22 // "
const BS = 0x5c // \
const COMMA = 0x2c
const COLON = 0x3a
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACKET = 0x5b
const RBRACKET = 0x5d
const MINUS = 0x2d
const D0 = 0x30
const D9 = 0x39

/** Bytes inside a string: 0 plain ASCII, 1 `"`, 2 `\`, 3 a control (never raw in JSON), 4 part of a non-ASCII character. */
const STRING_BYTE = new Uint8Array(256)
for (let c = 0; c < 0x20; c++) STRING_BYTE[c] = 3
STRING_BYTE[Q] = 1
STRING_BYTE[BS] = 2
for (let c = 0x80; c < 0x100; c++) STRING_BYTE[c] = 4
/** Hex digits JCS writes (lowercase): 1. */
const HEX = new Uint8Array(256)
for (const c of Buffer.from('0123456789abcdef')) HEX[c] = 1

const CHAIN_HEAD = Buffer.from('{"hash":"')
const CHAIN_PREV = Buffer.from('","prev":"')
const CHAIN_SEQ = Buffer.from('","seq":')

// The scanner's state for the line being scanned (one line at a time, synchronously).
let B: Buffer = Buffer.alloc(0)
let END = 0
let NON_ASCII = false
/** Set by scanString for a member name: its bytes [KEY_START, KEY_END), and whether it has escapes or non-ASCII. */
let KEY_START = 0
let KEY_END = 0
let KEY_COMPLEX = false
let CHAIN: LineChain | null = null
let CHAIN_AT = -1

/**
 * Decides, in one pass over the bytes and without building any value,
 * whether a line is the RFC 8785 canonical JSON of an object with a
 * well-formed top-level `chain` ({hash, prev, seq} in that layout), and if
 * so returns the chain fields (`chainAt` is the offset of the chain object's
 * `{`). It accepts only text that canonicalization would produce: no
 * whitespace, member names strictly ascending by UTF-16 code units (hence no
 * duplicates), strings with exactly JCS's escapes and valid UTF-8, numbers in
 * ECMAScript's shortest form. It may refuse unusual but canonical lines
 * (null): the caller then checks them the long way. It never accepts a line
 * the long way would refuse — test/unit/chain.test.ts checks that on random
 * and mutated records.
 */
export class CanonicalLineScanner {
  /** Offset of the top-level chain object's `{` in the last accepted line. */
  chainAt = -1

  /** Scan exactly the line b[start, end) (without its newline). */
  scan(b: Buffer, start: number, end: number): LineChain | null {
    B = b
    END = end
    NON_ASCII = false
    CHAIN = null
    CHAIN_AT = -1
    const p = scanObject(start, 0, true)
    const chain = CHAIN
    this.chainAt = CHAIN_AT
    B = EMPTY
    if (p !== end || chain === null) return null
    if (NON_ASCII && !isUtf8(b.subarray(start, end))) return null
    return chain
  }
}

const EMPTY = Buffer.alloc(0)

// Each scanner returns the offset after what it scanned, or -1 if that is not canonical JSON.

function scanObject(p: number, depth: number, top: boolean): number {
  const b = B
  if (b[p] !== LBRACE) return -1
  p++
  if (b[p] === RBRACE) return p + 1
  let prevStart = -1
  let prevEnd = -1
  let prevComplex = false
  for (;;) {
    // The member name: plain ASCII names (the usual) in a tight loop, others by scanString.
    if (b[p] !== Q) return -1
    const ks = p + 1
    let q = ks
    let c = b[q]!
    while (c !== Q && c >= 0x20 && c < 0x80 && c !== BS) c = b[++q]!
    let ke: number
    let kc: boolean
    if (c === Q) {
      ke = q
      kc = false
      p = q + 1
    } else {
      p = scanString(p, true)
      if (p < 0) return -1
      ke = KEY_END
      kc = KEY_COMPLEX
    }
    if (ke > END) return -1
    if (prevStart >= 0 && !ascending(prevStart, prevEnd, prevComplex, ks, ke, kc)) return -1
    prevStart = ks
    prevEnd = ke
    prevComplex = kc
    if (b[p] !== COLON) return -1
    p++
    const v = b[p]
    if (v === Q) p = scanString(p, false)
    // The top-level "chain" member: c h a i n.
    else if (top && ke - ks === 5 && b[ks] === 0x63 && b[ks + 1] === 0x68 && b[ks + 2] === 0x61 && b[ks + 3] === 0x69 && b[ks + 4] === 0x6e) p = scanChain(p)
    else p = scanValue(p, depth + 1)
    if (p < 0) return -1
    const d = b[p++]
    if (d === COMMA) continue
    return d === RBRACE ? p : -1
  }
}

/** Strictly ascending member names (UTF-16 code unit order). */
function ascending(as: number, ae: number, ac: boolean, bs: number, be: number, bc: boolean): boolean {
  const b = B
  if (ac || bc) {
    // Escapes or non-ASCII: compare the decoded names as JavaScript does.
    try {
      const x = JSON.parse(b.toString('utf8', as - 1, ae + 1)) as string
      const y = JSON.parse(b.toString('utf8', bs - 1, be + 1)) as string
      return x < y
    } catch {
      return false
    }
  }
  const n = Math.min(ae - as, be - bs)
  for (let i = 0; i < n; i++) {
    const x = b[as + i]!
    const y = b[bs + i]!
    if (x !== y) return x < y
  }
  return ae - as < be - bs
}

function scanValue(p: number, depth: number): number {
  if (depth > MAX_DEPTH) return -1
  const b = B
  const c = b[p]
  switch (c) {
    case Q:
      return scanString(p, false)
    case LBRACE:
      return scanObject(p, depth, false)
    case LBRACKET:
      return scanArray(p, depth)
    case 0x74: // true
      return p + 3 < END && b[p + 1] === 0x72 && b[p + 2] === 0x75 && b[p + 3] === 0x65 ? p + 4 : -1
    case 0x66: // false
      return p + 4 < END && b[p + 1] === 0x61 && b[p + 2] === 0x6c && b[p + 3] === 0x73 && b[p + 4] === 0x65 ? p + 5 : -1
    case 0x6e: // null
      return p + 3 < END && b[p + 1] === 0x75 && b[p + 2] === 0x6c && b[p + 3] === 0x6c ? p + 4 : -1
    default:
      return c === MINUS || (c !== undefined && c >= D0 && c <= D9) ? scanNumber(p) : -1
  }
}

function scanArray(p: number, depth: number): number {
  const b = B
  p++
  if (b[p] === RBRACKET) return p + 1
  for (;;) {
    p = scanValue(p, depth + 1)
    if (p < 0) return -1
    const c = b[p++]
    if (c === COMMA) continue
    return c === RBRACKET ? p : -1
  }
}

/** A string as JCS writes it; for a member name, records where it is. */
function scanString(p: number, isKey: boolean): number {
  const b = B
  const end = END
  if (b[p] !== Q) return -1
  const s = ++p
  let complex = false
  for (;;) {
    while (p < end && STRING_BYTE[b[p]!] === 0) p++
    if (p >= end) return -1
    const k = STRING_BYTE[b[p]!]
    if (k === 1) break
    if (k === 3) return -1
    complex = true
    if (k === 4) {
      NON_ASCII = true
      p++
      continue
    }
    // JCS escapes: \" \\ \b \f \n \r \t, and \u00xx (lowercase) for the other controls.
    const e = b[p + 1]
    if (e === Q || e === BS || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
      p += 2
      continue
    }
    if (e !== 0x75 || p + 5 >= end || b[p + 2] !== D0 || b[p + 3] !== D0) return -1
    const h = b[p + 4]!
    const l = b[p + 5]!
    const lv = l >= D0 && l <= D9 ? l - D0 : l >= 0x61 && l <= 0x66 ? l - 0x61 + 10 : -1
    if (lv < 0 || (h !== D0 && h !== 0x31)) return -1
    const v = (h - D0) * 16 + lv
    if (v === 0x08 || v === 0x09 || v === 0x0a || v === 0x0c || v === 0x0d) return -1
    p += 6
  }
  if (isKey) {
    KEY_START = s
    KEY_END = p
    KEY_COMPLEX = complex
  }
  return p + 1
}

/** A number in ECMAScript's shortest form (what JCS writes). */
function scanNumber(s: number): number {
  const b = B
  let p = s
  let plainInt = true
  if (b[p] === MINUS) p++
  const digits = p
  for (; p < END; p++) {
    const c = b[p]!
    if (c >= D0 && c <= D9) continue
    if (c === 0x2e || c === 0x65 || c === 0x45 || c === 0x2b || c === MINUS) {
      plainInt = false
      continue
    }
    break
  }
  const n = p - digits
  if (n === 0) return -1
  if (plainInt && n <= 15) {
    // An integer of up to 15 digits is canonical unless it has a leading zero or is -0.
    return b[digits] !== D0 || (n === 1 && digits === s) ? p : -1
  }
  const tok = b.toString('latin1', s, p)
  const v = Number(tok)
  return Number.isFinite(v) && String(v) === tok ? p : -1
}

function literalAt(lit: Buffer, p: number): boolean {
  const n = lit.length
  if (p + n > END) return false
  const b = B
  for (let i = 0; i < n; i++) if (b[p + i] !== lit[i]) return false
  return true
}

function hex64At(p: number): boolean {
  if (p + 64 > END) return false
  const b = B
  for (let i = p; i < p + 64; i++) if (HEX[b[i]!] === 0) return false
  return true
}

/** The top-level chain object, in the one layout canonicalization gives it. */
function scanChain(p: number): number {
  const b = B
  const at = p
  if (!literalAt(CHAIN_HEAD, p)) return -1
  p += CHAIN_HEAD.length
  if (!hex64At(p)) return -1
  const hash = b.toString('latin1', p, p + 64)
  p += 64
  if (!literalAt(CHAIN_PREV, p)) return -1
  p += CHAIN_PREV.length
  if (!hex64At(p)) return -1
  const prev = b.toString('latin1', p, p + 64)
  p += 64
  if (!literalAt(CHAIN_SEQ, p)) return -1
  p += CHAIN_SEQ.length
  const ds = p
  let seq = 0
  while (p < END && b[p]! >= D0 && b[p]! <= D9) {
    seq = seq * 10 + (b[p]! - D0)
    p++
  }
  if (p === ds || p - ds > 15 || b[ds] === D0 || b[p] !== RBRACE) return -1
  CHAIN_AT = at
  CHAIN = { seq, prev, hash }
  return p + 1
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
  return lines.join('\n')
}
