import { isUtf8 } from 'node:buffer'
import { wasmLineScanner, type WasmLineScanner } from './wasm/canonical-scan-wasm.js'

/**
 * The fast path of `pgwitness verify`: a one-pass byte scanner that decides
 * whether a line is exactly the RFC 8785 canonical JSON of a chained record,
 * without building any value, and finds its chain fields (see
 * CanonicalLineScanner). verify.ts falls back to JSON.parse for any line the
 * scanner refuses.
 */

/** The chain fields of one line, read by whichever path checked it. */
export interface LineChain {
  seq: number
  prev: string
  hash: string
}

// ---- the fast path ------------------------------------------------------------

/** `"hash":"` + 64 hex digits + `",`: what the hashed text lacks. */
export const HASH_MEMBER_BYTES = 8 + 64 + 2
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
 *
 * Lines are first offered to the WebAssembly build of the same scanner
 * (wasm/canonical-scan.c: 2.4-2.5 µs per 1.7 kB record line all in, where
 * this one takes 2.2-4.1 µs, moving between runs); what it does not
 * accept, this TypeScript scanner decides.
 */
export class CanonicalLineScanner {
  /** Offset of the top-level chain object's `{` in the last accepted line. */
  chainAt = -1

  /** The last accepted line's top-level "type" is "checkpoint". */
  checkpoint = false

  /** @param native false: the TypeScript scanner alone (for tests and measurements). */
  constructor(native = true) {
    this.wasm = native ? wasmLineScanner() : null
  }

  private readonly wasm: WasmLineScanner | null

  /** Scan exactly the line b[start, end) (without its newline). */
  scan(b: Buffer, start: number, end: number): LineChain | null {
    const w = this.wasm
    if (w !== null && w.scan(b, start, end)) {
      const r = w.last
      this.chainAt = start + r.chainAt
      this.checkpoint = isCheckpoint(b, start + r.typeStart, start + r.typeEnd)
      return { seq: r.seq, prev: b.toString('latin1', start + r.prevAt, start + r.prevAt + 64), hash: b.toString('latin1', start + r.hashAt, start + r.hashAt + 64) }
    }
    B = b
    END = end
    NON_ASCII = false
    CHAIN = null
    CHAIN_AT = -1
    TYPE_START = -1
    TYPE_END = -1
    const p = scanObject(start, 0, true)
    const chain = CHAIN
    this.chainAt = CHAIN_AT
    this.checkpoint = isCheckpoint(b, TYPE_START, TYPE_END)
    B = EMPTY
    if (p !== end || chain === null) return null
    if (NON_ASCII && !isUtf8(b.subarray(start, end))) return null
    return chain
  }
}

const EMPTY = Buffer.alloc(0)
const CHECKPOINT_VALUE = Buffer.from('"checkpoint"')

/** b[start, end) is the string value "checkpoint" (with its quotes). */
function isCheckpoint(b: Buffer, start: number, end: number): boolean {
  return end - start === CHECKPOINT_VALUE.length && b.compare(CHECKPOINT_VALUE, 0, CHECKPOINT_VALUE.length, start, end) === 0
}
/** The top-level "type" member's value (with its quotes) in the line being scanned. */
let TYPE_START = -1
let TYPE_END = -1

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
    if (v === Q) {
      const vs = p
      p = scanString(p, false)
      // The top-level "type" member: t y p e (its value tells checkpoint records apart).
      if (top && p > 0 && ke - ks === 4 && b[ks] === 0x74 && b[ks + 1] === 0x79 && b[ks + 2] === 0x70 && b[ks + 3] === 0x65) {
        TYPE_START = vs
        TYPE_END = p
      }
    }
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
