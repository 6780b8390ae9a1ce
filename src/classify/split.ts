import { loadModule, parseSync, type ParseResult } from 'libpg-query'
import { classifyStatement, type AuditClass, type StatementObject } from './index.js'
import { commandOf } from './command.js'
import type { StatementPolicyInfo } from '../evidence/types.js'
import { asStandardConforming } from './nonstandard-strings.js'
import { mayContainPassword, redactStatement } from './redact.js'
import { governedSettingChanges } from '../policy/reserved-settings.js'

/** One statement of a (possibly multi-statement) SQL string, described for the audit record. */
export interface SplitStatement {
  /** The statement's text, password literals redacted. */
  text: string
  /** Command tag-style name, e.g. SELECT, CREATE TABLE; UNKNOWN if unparseable. */
  command: string
  /** The parse tree node of this statement (null when unparseable). */
  node: Record<string, unknown> | null
  /** pgaudit-style classes and the objects the statement names. */
  classes: readonly AuditClass[]
  objects: readonly StatementObject[]
  /**
   * The statement changes a governed setting (application_name, pgwitness.*;
   * see governedSettingChanges): its record says so. False when unparsed.
   */
  governedSetting: boolean
  /** How the text reached the server, when not plain UTF-8 (see TextOrigin). */
  origin?: TextOrigin
  /** What the session's statement rules said of it, when anything. */
  policy?: StatementPolicyInfo
}

/**
 * How a statement text was sent: the session's client encoding and
 * standard_conforming_strings when it was decoded, and the raw bytes when
 * the text is not their exact rendering (protocol/client-encoding.ts).
 */
export interface TextOrigin {
  /** Client encoding the text was decoded from; null when UTF8. */
  encoding: string | null
  /** Base64 of the bytes as sent when the text is not an exact rendering of them; null otherwise. */
  raw: string | null
  standardConformingStrings: boolean
}

/** The statements of a text sent under `origin`: split as the server splits it, each carrying the origin. */
export function splitSent(text: string, origin: TextOrigin | undefined): readonly SplitStatement[] {
  const split = splitStatements(text, origin?.standardConformingStrings ?? true)
  return withOrigin(split, origin)
}

/** Statements (shared, cached) with `origin` attached, when there is one to record. */
export function withOrigin(split: readonly SplitStatement[], origin: TextOrigin | undefined): readonly SplitStatement[] {
  if (origin === undefined || (origin.encoding === null && origin.raw === null)) return split
  return split.map((s) => ({ ...s, origin }))
}

const NO_CLASSES: readonly AuditClass[] = []
const NO_OBJECTS: readonly StatementObject[] = []

/** A statement we cannot parse (or only hold a prefix of): named UNKNOWN, still redacted. */
export function unparsedStatement(text: string, command = 'UNKNOWN'): SplitStatement {
  return { text: redact(text, null), command, node: null, classes: NO_CLASSES, objects: NO_OBJECTS, governedSetting: false }
}

/** The parser could not read the text: it is one UNKNOWN statement (an empty text is not that). */
export function isUnparsed(statements: readonly SplitStatement[]): boolean {
  return statements.length === 1 && statements[0]!.node === null && statements[0]!.command === 'UNKNOWN'
}

function describe(text: string, node: Record<string, unknown>): SplitStatement {
  const c = classifyStatement(node)
  return {
    text: redact(text, node),
    command: commandOf(node),
    node,
    classes: c.classes,
    objects: c.objects,
    governedSetting: governedSettingChanges(node).length > 0,
  }
}

function redact(text: string, node: Record<string, unknown> | null): string {
  return mayContainPassword(text) ? redactStatement(text, node) : text
}

let loaded: Promise<void> | null = null

/** The parser is WASM: load it once before the first split. */
export function loadSqlParser(): Promise<void> {
  loaded ??= loadModule()
  return loaded
}

const CACHE_LIMIT = 2048
const cache = new Map<string, readonly SplitStatement[]>()
/** Splits under standard_conforming_strings = off (rare): cached apart. */
const nonstandardCache = new Map<string, readonly SplitStatement[]>()

/**
 * Split SQL into statements with PostgreSQL's own parser (libpg-query), the
 * way the server will see them. Applications repeat the same texts, so
 * results are cached (bounded, least-recently-inserted evicted).
 *
 * PostgreSQL parses a whole simple-Query string before running any of it, so
 * a string that does not parse runs nothing: it is kept as ONE statement with
 * command UNKNOWN (the server's ErrorResponse becomes its outcome).
 */
export function splitStatements(sql: string, standardConformingStrings = true): readonly SplitStatement[] {
  const c = standardConformingStrings ? cache : nonstandardCache
  const hit = c.get(sql)
  if (hit) return hit
  const result = splitUncached(sql, standardConformingStrings)
  if (sql.length <= 65536) {
    if (c.size >= CACHE_LIMIT) c.delete(c.keys().next().value as string)
    c.set(sql, result)
  }
  return result
}

/**
 * `standardConformingStrings` false: the server reads backslashes in '...'
 * as escapes; the parser is given a rewrite of the text that it splits the
 * same way (see nonstandard-strings.ts), and the statements' texts are cut
 * from the original at the same offsets.
 */
function splitUncached(sql: string, standardConformingStrings: boolean): readonly SplitStatement[] {
  // The WASM parser rejects an empty input; PostgreSQL answers it with EmptyQueryResponse.
  if (/^[\s;]*$/.test(sql)) return [unparsedStatement(sql, 'EMPTY QUERY')]
  const parseText = standardConformingStrings ? sql : asStandardConforming(sql)
  if (parseText === null) return [unparsedStatement(sql)] // the server refuses it whole
  let tree: ParseResult
  try {
    tree = parseSync(parseText)
  } catch {
    return [unparsedStatement(sql)]
  }
  const stmts = tree.stmts ?? []
  if (stmts.length === 0) return [unparsedStatement(sql, 'EMPTY QUERY')]
  // Locations are byte offsets into the UTF-8 text; for ASCII they equal string offsets.
  const ascii = Buffer.byteLength(sql) === sql.length
  const bytes = ascii ? null : Buffer.from(sql, 'utf8')
  const total = bytes ? bytes.length : sql.length
  // The statements' texts partition the string exactly: each runs from just after the previous
  // statement's terminating ';' (the first from the start) through its own ';' (the last to the end).
  const out: SplitStatement[] = []
  let start = 0
  for (let i = 0; i < stmts.length; i++) {
    const raw = stmts[i]!
    const node = (raw.stmt ?? {}) as Record<string, unknown>
    const end = i === stmts.length - 1 ? total : (raw.stmt_location ?? 0) + (raw.stmt_len ?? 0) + 1
    const text = bytes ? bytes.subarray(start, end).toString('utf8') : sql.slice(start, end)
    out.push(describe(text, node))
    start = end
  }
  return out
}
