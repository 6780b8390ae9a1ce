/**
 * RFC 8785 JSON Canonicalization Scheme (JCS).
 *
 * - Object members sorted by their names as arrays of UTF-16 code units
 *   (JavaScript's default string order, independent of locale), recursively;
 *   array order kept.
 * - Strings and numbers serialized as ECMAScript's JSON.stringify does (RFC
 *   8785 §3.2.2 defines them that way): shortest round-trip number form,
 *   `-0` as `0`, exponent from 1e21 up and below 1e-6; strings with only the
 *   mandatory escapes (`\"`, `\\`, `\b \f \n \r \t`, other controls as
 *   lowercase `\u00xx`), everything else as the character itself.
 * - No whitespace.
 * - Data outside I-JSON (RFC 7493) is refused with CanonicalJsonError: NaN
 *   and ±Infinity, strings with lone surrogates, bigint.
 *
 * Values with no JSON representation are treated as JSON.stringify treats
 * them (object members whose value is undefined, a function or a symbol are
 * left out; as array elements they become null; `toJSON()` is honoured), so
 * for any `x` that JSON.stringify accepts,
 * `canonicalize(x) === canonicalize(JSON.parse(JSON.stringify(x)))`.
 *
 * Why not the `canonicalize` npm package: its current release requires Node
 * 22 (this project supports 20); and the audit writer needs the members of a
 * record serialized separately (see chain.ts) so that the line it writes and
 * the text it hashes come out of one pass. The implementation is small and
 * test/unit/canonical-json.test.ts runs RFC 8785's own test vectors.
 */

export class CanonicalJsonError extends Error {
  override readonly name = 'CanonicalJsonError'
}

// String.prototype.isWellFormed is in Node 20 (V8 11.3) but not in lib ES2022.
type WellFormed = { isWellFormed(): boolean; toWellFormed(): string }

/** The canonical JSON text of `value`. Throws CanonicalJsonError for data outside I-JSON. */
export function canonicalize(value: unknown): string {
  const s = serialize(value)
  if (s === undefined) throw new CanonicalJsonError(`${typeof value} has no JSON representation`)
  return s
}

/** JCS string: JSON.stringify's escaping, lone surrogates refused. */
export function canonicalString(s: string): string {
  // Most strings in a record need no escape and hold no surrogate: quoted as they are (half the cost).
  if (!NEEDS_CARE.test(s)) return '"' + s + '"'
  if (!(s as unknown as WellFormed).isWellFormed()) throw new CanonicalJsonError('string contains a lone surrogate (not I-JSON)')
  return JSON.stringify(s)
}

/** What JSON.stringify escapes (quote, backslash, controls) or checks (surrogates, paired or not). */
const NEEDS_CARE = /["\\\u0000-\u001f\ud800-\udfff]/

/** JCS number: ECMAScript Number::toString; NaN and Infinity refused. */
export function canonicalNumber(n: number): string {
  if (!Number.isFinite(n)) throw new CanonicalJsonError(`${n} is not a JSON number`)
  // Number::toString, which JSON.stringify uses for finite numbers (and -0 is "0", as RFC 8785 wants).
  return String(n)
}

/**
 * The canonical serialization of each member of a plain object, in
 * canonical (sorted) order, as [name, `"name":value`] pairs; members
 * without a JSON representation are left out.
 */
export function canonicalMembers(obj: Record<string, unknown>): Array<[string, string]> {
  const keys = Object.keys(obj)
  sortKeys(keys)
  const out: Array<[string, string]> = []
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const v = serialize(obj[k])
    if (v !== undefined) out.push([k, memberPrefix(k) + v])
  }
  return out
}

// Records repeat the same member names over and over: their serialized form
// (`"name":`) is cached. Bounded, in case names come from outside.
const prefixes = new Map<string, string>()

function memberPrefix(k: string): string {
  let p = prefixes.get(k)
  if (p === undefined) {
    p = canonicalString(k) + ':'
    if (prefixes.size < 4096) prefixes.set(k, p)
  }
  return p
}

/** Sort member names by UTF-16 code units (what Array#sort does), by insertion for the usual few. */
function sortKeys(keys: string[]): void {
  const n = keys.length
  if (n > 32) {
    keys.sort()
    return
  }
  for (let i = 1; i < n; i++) {
    const k = keys[i]!
    let j = i - 1
    while (j >= 0 && keys[j]! > k) {
      keys[j + 1] = keys[j]!
      j--
    }
    keys[j + 1] = k
  }
}

function serialize(value: unknown): string | undefined {
  switch (typeof value) {
    case 'string':
      return canonicalString(value)
    case 'number':
      return canonicalNumber(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'object':
      if (value === null) return 'null'
      return serializeObject(value as object)
    case 'bigint':
      throw new CanonicalJsonError('bigint is not a JSON number')
    default:
      // undefined, function, symbol
      return undefined
  }
}

/**
 * Freeze a JSON value and everything in it. A session's records all carry
 * the same context objects (identity, session, upstream, connection):
 * frozen, nothing can change one record's evidence through another.
 */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}

/**
 * The same text as one flat string. A serialized text is a rope of ~3
 * pieces per member (how concatenation builds it); a text kept for as long
 * as a session lives is better kept flat (about 4 KiB less per session's
 * context). JSON.parse of its JSON copies it, whatever code units it holds.
 */
export function flatCopy(text: string): string {
  return JSON.parse(JSON.stringify(text)) as string
}

function serializeObject(value: object): string | undefined {
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') {
    return serialize((value as { toJSON(): unknown }).toJSON())
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]'
    let out = '['
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out += ','
      out += serialize(value[i]) ?? 'null'
    }
    return out + ']'
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    return serialize(value.valueOf())
  }
  const obj = value as Record<string, unknown>
  const keys = Object.keys(obj)
  if (keys.length === 0) return '{}'
  sortKeys(keys)
  let out = '{'
  let first = true
  for (let i = 0; i < keys.length; i++) {
    const k = keys[i]!
    const v = serialize(obj[k])
    if (v === undefined) continue
    if (first) first = false
    else out += ','
    out += memberPrefix(k) + v
  }
  return out + '}'
}

/**
 * A copy of `value` made I-JSON: lone surrogates replaced by U+FFFD,
 * non-finite numbers by null (what JSON.stringify writes for them), bigint
 * by its decimal string. For data from outside (a token's claims may hold a
 * lone surrogate) that must still be recorded rather than refused.
 */
export function toIJson(value: unknown): unknown {
  switch (typeof value) {
    case 'string':
      return (value as unknown as WellFormed).toWellFormed()
    case 'number':
      return Number.isFinite(value) ? value : null
    case 'bigint':
      return value.toString()
    case 'object': {
      if (value === null) return null
      if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return toIJson((value as { toJSON(): unknown }).toJSON())
      if (Array.isArray(value)) return value.map((v) => (v === undefined || typeof v === 'function' || typeof v === 'symbol' ? null : toIJson(v)))
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue
        out[(k as unknown as WellFormed).toWellFormed()] = toIJson(v)
      }
      return out
    }
    default:
      return undefined
  }
}
