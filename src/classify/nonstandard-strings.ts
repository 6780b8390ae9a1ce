/**
 * `standard_conforming_strings = off`: PostgreSQL then treats a backslash
 * inside an ordinary '...' literal as an escape, so `'a\'; DROP ...'` is one
 * literal to the server. libpg-query always parses with the setting on. This
 * rewrites a text into one that libpg-query splits and classifies exactly as
 * the server with the setting off would: same length, same UTF-8 byte
 * offsets (only ASCII characters are replaced, by ASCII characters), so the
 * statement locations it reports hold for the original text.
 *
 * Lexing follows PostgreSQL's scan.l: -- and nested /* *\/ comments,
 * $tag$ dollar quotes, E'' (escapes whatever the setting), U&'', B'', X''
 * (no escapes), N'' (an ordinary literal), "identifiers" with "" escapes,
 * and literals continued across a newline ('a'\n'b' is one literal of the
 * first part's kind).
 */

import { isUtf8 } from 'node:buffer'

/** A neutral stand-in for an escaping backslash: any character but a quote keeps a standard literal going. */
const NEUTRAL = '_'

/**
 * The text rewritten for a parser with standard_conforming_strings on, or
 * null when the server with it off refuses the text outright (a U&'' literal:
 * "unsafe use of string constant with Unicode escapes"), so nothing of it runs.
 */
export function asStandardConforming(sql: string): string | null {
  // Nothing to rewrite without a backslash (the hot path) or a U&'' literal to refuse.
  if (sql.indexOf('\\') < 0 && !/[uU]&'/.test(sql)) return sql
  try {
    return rewrite(sql)
  } catch (err) {
    if (err === REFUSED) return null
    throw err
  }
}

/** Thrown inside the lexer when the server would refuse the whole text. */
const REFUSED = new Error('refused by the server')

function rewrite(sql: string): string | null {
  const out = sql.split('')
  const n = sql.length
  let i = 0
  while (i < n) {
    const c = sql[i]!
    if (c === '-' && sql[i + 1] === '-') {
      i = lineEnd(sql, i)
    } else if (c === '/' && sql[i + 1] === '*') {
      i = commentEnd(sql, i)
    } else if (c === "'") {
      i = literal(sql, out, i + 1, 'ordinary')
    } else if (c === '"') {
      i = quotedIdentifierEnd(sql, i + 1)
    } else if (c === '$') {
      i = dollar(sql, i)
    } else if (isIdentStart(c)) {
      const start = i
      while (i < n && isIdentCont(sql[i]!)) i++
      const word = sql.slice(start, i)
      if (sql[i] === "'" && word.length === 1) {
        const k = word.toLowerCase()
        // E'' escapes anyway; B'' X'' have no escapes; N'' is an ordinary literal.
        i = literal(sql, out, i + 1, k === 'e' ? 'escape' : k === 'b' || k === 'x' ? 'plain' : 'ordinary')
      } else if ((word === 'u' || word === 'U') && sql[i] === '&' && sql[i + 1] === "'") {
        return null
      } else if ((word === 'u' || word === 'U') && sql[i] === '&' && sql[i + 1] === '"') {
        i = quotedIdentifierEnd(sql, i + 2)
      }
    } else if (c >= '0' && c <= '9') {
      // A number and whatever identifier characters stick to it (1e'x' is not an E'' literal).
      while (i < n && (isIdentCont(sql[i]!) || sql[i] === '.')) i++
    } else {
      i++
    }
  }
  return out.join('')
}

type LiteralKind = 'ordinary' | 'escape' | 'plain'

/**
 * A literal whose body starts at i; returns the index after it (and after
 * its continuations). Ordinary literals get their backslash escapes rewritten.
 */
function literal(sql: string, out: string[], i: number, kind: LiteralKind): number {
  const n = sql.length
  for (;;) {
    const start = i
    while (i < n) {
      const c = sql[i]!
      if (c === "'") {
        if (sql[i + 1] === "'" && kind !== 'plain') {
          i += 2
          continue
        }
        break
      }
      if (c === '\\' && kind !== 'plain' && i + 1 < n) {
        if (kind === 'ordinary') {
          // \' and \\ become '' and two neutral characters; \x becomes a neutral character and x.
          const next = sql[i + 1]!
          out[i] = next === "'" ? "'" : NEUTRAL
          if (next === '\\') out[i + 1] = NEUTRAL
        }
        i += 2
        continue
      }
      i++
    }
    if (i >= n) return n // unterminated: both parsers fail on it
    if (kind === 'ordinary' && start >= 0 && !escapesValid(sql, start, i)) throw REFUSED
    const after = continuation(sql, i + 1)
    if (after < 0) return i + 1
    i = after
  }
}

/**
 * After a closing quote at i-1: where the next part of the same literal
 * starts ('a' <whitespace with a newline> 'b' continues it), or -1.
 */
function continuation(sql: string, i: number): number {
  const n = sql.length
  while (i < n && (sql[i] === ' ' || sql[i] === '\t' || sql[i] === '\f')) i++
  if (sql[i] !== '\n' && sql[i] !== '\r') return -1
  for (;;) {
    const c = sql[i]
    if (c === ' ' || c === '\t' || c === '\f' || c === '\n' || c === '\r' || c === '\v') i++
    else if (c === '-' && sql[i + 1] === '-') {
      i = lineEnd(sql, i)
      if (i >= n) return -1
    } else break
  }
  return sql[i] === "'" ? i + 1 : -1
}

/**
 * With the setting off an ordinary literal is lexed as an E'' one: its
 * escapes must make valid UTF-8 without NUL and valid Unicode escapes, or the
 * server refuses the whole text (22021 / 22025) before running any of it.
 */
function escapesValid(sql: string, start: number, end: number): boolean {
  const body = sql.slice(start, end)
  if (!/\\([0-7]|x[0-9a-fA-F]|[uU])/.test(body)) return true
  const bytes: number[] = []
  let pendingHigh = -1
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!
    if (c !== '\\' || i + 1 >= body.length) {
      if (pendingHigh >= 0) return false
      bytes.push(...Buffer.from(c === "'" ? "'" : c, 'utf8'))
      if (c === "'") i++ // ''
      continue
    }
    const e = body[i + 1]!
    let m: RegExpMatchArray | null
    if ((m = /^[0-7]{1,3}/.exec(body.slice(i + 1)))) {
      bytes.push(parseInt(m[0], 8) & 0xff)
      i += m[0].length
    } else if ((m = /^x([0-9a-fA-F]{1,2})/.exec(body.slice(i + 1)))) {
      bytes.push(parseInt(m[1]!, 16))
      i += m[0].length
    } else if ((m = /^(u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})/.exec(body.slice(i + 1)))) {
      const cp = parseInt(m[0].slice(1), 16)
      i += m[0].length
      if (cp >= 0xd800 && cp <= 0xdbff) {
        if (pendingHigh >= 0) return false
        pendingHigh = cp
        continue
      }
      let full = cp
      if (cp >= 0xdc00 && cp <= 0xdfff) {
        if (pendingHigh < 0) return false
        full = 0x10000 + ((pendingHigh - 0xd800) << 10) + (cp - 0xdc00)
        pendingHigh = -1
      } else if (pendingHigh >= 0) return false
      if (full === 0 || full > 0x10ffff) return false
      bytes.push(...Buffer.from(String.fromCodePoint(full), 'utf8'))
    } else if (e === 'u' || e === 'U') {
      return false // \u without its hex digits: invalid Unicode escape
    } else {
      if (pendingHigh >= 0) return false
      const simple: Record<string, number> = { b: 8, f: 12, n: 10, r: 13, t: 9 }
      bytes.push(...Buffer.from(String.fromCharCode(simple[e] ?? e.charCodeAt(0)), 'utf8'))
      i++
    }
  }
  if (pendingHigh >= 0) return false
  const buf = Buffer.from(bytes)
  return !buf.includes(0) && isUtf8(buf)
}

function lineEnd(sql: string, i: number): number {
  while (i < sql.length && sql[i] !== '\n' && sql[i] !== '\r') i++
  return i
}

/** After a /* comment starting at i (nested, as PostgreSQL nests them). */
function commentEnd(sql: string, i: number): number {
  let depth = 0
  const n = sql.length
  while (i < n) {
    if (sql[i] === '/' && sql[i + 1] === '*') {
      depth++
      i += 2
    } else if (sql[i] === '*' && sql[i + 1] === '/') {
      depth--
      i += 2
      if (depth === 0) return i
    } else i++
  }
  return n
}

/** After a "quoted identifier" whose body starts at i ("" is a quote inside it). */
function quotedIdentifierEnd(sql: string, i: number): number {
  const n = sql.length
  while (i < n) {
    if (sql[i] === '"') {
      if (sql[i + 1] === '"') i += 2
      else return i + 1
    } else i++
  }
  return n
}

/** A $ at i: a dollar-quoted string ($tag$...$tag$) or a parameter / lone dollar. */
function dollar(sql: string, i: number): number {
  let j = i + 1
  if (j < sql.length && isDollarTagStart(sql[j]!)) {
    while (j < sql.length && isDollarTagCont(sql[j]!)) j++
  }
  if (sql[j] !== '$') {
    // $1 parameter or a lone $: skip the digits.
    j = i + 1
    while (j < sql.length && sql[j]! >= '0' && sql[j]! <= '9') j++
    return j
  }
  const tag = sql.slice(i, j + 1)
  const end = sql.indexOf(tag, j + 1)
  return end < 0 ? sql.length : end + tag.length
}

function isIdentStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c >= '\x80'
}

function isIdentCont(c: string): boolean {
  return isIdentStart(c) || (c >= '0' && c <= '9') || c === '$'
}

function isDollarTagStart(c: string): boolean {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c >= '\x80'
}

function isDollarTagCont(c: string): boolean {
  return isDollarTagStart(c) || (c >= '0' && c <= '9')
}
