/**
 * Drop the members of a record the report never reads (the chain's prev
 * hash, connection and upstream details, statement parameters, …) from its
 * canonical JSON before it is parsed: JSON.parse is most of the report's
 * cost, and these members are about half of a statement record's bytes.
 *
 * Only for lines the chain vouches for: they are canonical JSON (no
 * whitespace, valid strings), which this byte walker relies on. Which members
 * go is REPORT_UNUSED_MEMBERS below; every field a section reads must stay
 * out of it (the report tests check the sections' output; bench/RESULTS.md
 * records a byte comparison of reports on a generated log with and without).
 */

/** Drop this member. */
const DROP = 0
/** Members of an object to drop (DROP) or to strip in turn (an object value: its members named there), by name. */
export interface MemberDrops {
  [name: string]: typeof DROP | MemberDrops
}
/** MemberDrops with names as bytes, for the walk. */
export type Spec = Array<{ name: Uint8Array; rule: typeof DROP | Spec }>

export function compileDrops(def: MemberDrops): Spec {
  // A name is matched as it is written in canonical JSON (escapes and all).
  return Object.entries(def).map(([k, v]) => ({ name: Buffer.from(JSON.stringify(k).slice(1, -1)), rule: v === DROP ? DROP : compileDrops(v) }))
}

export const REPORT_UNUSED_MEMBERS: MemberDrops = {
  chain: { prev: DROP },
  connection: { client: { port: DROP }, id: DROP, tls: { cipher: DROP, version: DROP } },
  id: DROP,
  identity: { audience: DROP, token_expires_at: DROP },
  outcome: { command_tag: DROP, message: DROP, started_at: DROP },
  proxy: DROP,
  schema: DROP,
  statement: { function_oid: DROP, in_transaction: DROP, parameters: DROP, portal: DROP, prepared_name: DROP, protocol: DROP, text_truncated: DROP },
  upstream: { backend_pid: DROP, host: DROP, port: DROP, server_session_id: DROP },
}
export const REPORT_UNUSED: Spec = compileDrops(REPORT_UNUSED_MEMBERS)

const Q = 0x22
const BS = 0x5c
const COMMA = 0x2c
const LBRACE = 0x7b
const RBRACE = 0x7d
const LBRACKET = 0x5b
const RBRACKET = 0x5d

// The walk's state (one line at a time, synchronously). Plain byte loops on
// purpose: a native call (indexOf, copy, toString) per member costs more than
// the bytes it would save walking.
let S: Uint8Array = new Uint8Array(0)
let D: Uint8Array = new Uint8Array(0)
/** Read position in S, write position in D. */
let P = 0
let A = 0
/** End of the line in S: a walk past it means the line is not the JSON it should be. */
let END = 0

function skipString(): void {
  P++
  for (;;) {
    const c = S[P++]
    if (c === Q) return
    if (c === BS) P++
    else if (P >= END) throw new Error('unterminated string')
  }
}

function copyString(): void {
  D[A++] = Q
  P++
  for (;;) {
    const c = S[P++]!
    D[A++] = c
    if (c === Q) return
    if (c === BS) D[A++] = S[P++]!
    else if (P >= END) throw new Error('unterminated string')
  }
}

/** Past the value at S[P], copying it to D when `copy`. */
function walkValue(copy: boolean): void {
  let c = S[P]!
  if (c === Q) return copy ? copyString() : skipString()
  if (c === LBRACE || c === LBRACKET) {
    let depth = 0
    for (;;) {
      c = S[P]!
      if (c === Q) {
        if (copy) copyString()
        else skipString()
        continue
      }
      if (copy) D[A++] = c
      if (++P > END) throw new Error('unterminated value')
      if (c === LBRACE || c === LBRACKET) depth++
      else if ((c === RBRACE || c === RBRACKET) && --depth === 0) return
    }
  }
  while (c !== COMMA && c !== RBRACE && c !== RBRACKET) {
    if (copy) D[A++] = c
    if (++P >= END) throw new Error('unterminated value')
    c = S[P]!
  }
}

/** The rule for the member name S[start, end). */
function ruleFor(drop: Spec, start: number, end: number): typeof DROP | Spec | undefined {
  const len = end - start
  next: for (const e of drop) {
    if (e.name.length !== len) continue
    for (let k = 0; k < len; k++) if (e.name[k] !== S[start + k]) continue next
    return e.rule
  }
  return undefined
}

/** Copy the object at S[P] to D without the members `drop` names. */
function copyObject(drop: Spec): void {
  D[A++] = LBRACE
  P++
  let first = true
  while (S[P] !== RBRACE) {
    const keyStart = P
    skipString()
    const rule = ruleFor(drop, keyStart + 1, P - 1)
    P++ // the colon
    if (rule === DROP) {
      walkValue(false)
    } else {
      if (!first) D[A++] = COMMA
      first = false
      for (let k = keyStart; k < P; k++) D[A++] = S[k]!
      if (rule !== undefined && S[P] === LBRACE) copyObject(rule)
      else walkValue(true)
    }
    if (S[P] === COMMA) P++
    if (P >= END) throw new Error('unterminated object')
  }
  D[A++] = RBRACE
  P++
}

/**
 * Copy the record src[start, end) (canonical JSON) into dst at `at` without
 * the members `drop` names; returns the index past the copy. dst needs
 * end - start bytes free.
 */
export function copyStripped(src: Uint8Array, start: number, end: number, drop: Spec, dst: Uint8Array, at: number): number {
  S = src
  D = dst
  P = start
  A = at
  END = end
  copyObject(drop)
  if (P !== end) throw new Error(`record JSON ends at ${P}, not at the end of the line (${end})`)
  return A
}
