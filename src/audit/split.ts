import { loadModule, parseSync, type ParseResult } from 'libpg-query'
import { classifyStatement, type AuditClass, type StatementObject } from './classify/index.js'
import { commandOf } from './command.js'
import { mayContainPassword, redactStatement } from './redact.js'

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
}

const NO_CLASSES: readonly AuditClass[] = []
const NO_OBJECTS: readonly StatementObject[] = []

/** A statement we cannot parse (or only hold a prefix of): named UNKNOWN, still redacted. */
export function unparsedStatement(text: string, command = 'UNKNOWN'): SplitStatement {
  return { text: redact(text, null), command, node: null, classes: NO_CLASSES, objects: NO_OBJECTS }
}

function describe(text: string, node: Record<string, unknown>): SplitStatement {
  const c = classifyStatement(node)
  return { text: redact(text, node), command: commandOf(node), node, classes: c.classes, objects: c.objects }
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

/**
 * Split SQL into statements with PostgreSQL's own parser (libpg-query), the
 * way the server will see them. Applications repeat the same texts, so
 * results are cached (bounded, least-recently-inserted evicted).
 *
 * PostgreSQL parses a whole simple-Query string before running any of it, so
 * a string that does not parse runs nothing: it is kept as ONE statement with
 * command UNKNOWN (the server's ErrorResponse becomes its outcome).
 */
export function splitStatements(sql: string): readonly SplitStatement[] {
  const hit = cache.get(sql)
  if (hit) return hit
  const result = splitUncached(sql)
  if (sql.length <= 65536) {
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string)
    cache.set(sql, result)
  }
  return result
}

function splitUncached(sql: string): readonly SplitStatement[] {
  // The WASM parser rejects an empty input; PostgreSQL answers it with EmptyQueryResponse.
  if (/^[\s;]*$/.test(sql)) return [unparsedStatement(sql.trim(), 'EMPTY QUERY')]
  let tree: ParseResult
  try {
    tree = parseSync(sql)
  } catch {
    return [unparsedStatement(sql.trim())]
  }
  const stmts = tree.stmts ?? []
  if (stmts.length === 0) return [unparsedStatement(sql.trim(), 'EMPTY QUERY')]
  // Locations are byte offsets into the UTF-8 text; for ASCII they equal string offsets.
  const ascii = Buffer.byteLength(sql) === sql.length
  const bytes = ascii ? null : Buffer.from(sql, 'utf8')
  const out: SplitStatement[] = []
  for (const raw of stmts) {
    const start = raw.stmt_location ?? 0
    const node = (raw.stmt ?? {}) as Record<string, unknown>
    const end = raw.stmt_len === undefined || raw.stmt_len === 0 ? undefined : start + raw.stmt_len
    const text = bytes ? bytes.subarray(start, end).toString('utf8') : sql.slice(start, end)
    out.push(describe(text.trim(), node))
  }
  return out
}
