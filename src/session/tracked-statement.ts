/**
 * What the StatementTracker (statement-tracker.ts) knows about a statement
 * between its request and its response, and the pure rules that turn a
 * server's answer into the statement's recorded outcome.
 */
import type { OutcomeStatus, StatementInfo } from '../audit/types.js'
import type { SplitStatement } from '../audit/split.js'
import { decodeUtf8Prefix } from '../util/utf8.js'

export interface ObservedStatement {
  /**
   * Intent key (strict durability): the number the statement got when it was
   * forwarded (onIntent), 0 when intents are off or for outcomes that are
   * not a forwarded execution (a Parse or Bind refused, an implicit COMMIT).
   */
  key: number
  protocol: StatementInfo['protocol']
  text: string | null
  textTruncated: boolean
  parameters: StatementInfo['parameters']
  preparedName: string | null
  portal: string | null
  functionOid: number | null
  command: string
  classes: readonly string[]
  objects: StatementInfo['objects']
  /** Parse tree node of the statement (for statement rules), if parsed. */
  node: Record<string, unknown> | null
  inTransaction: boolean
  status: OutcomeStatus
  commandTag: string | null
  rows: number | null
  sqlstate: string | null
  message: string | null
  startedAtUs: number
  durationUs: number | null
}

export interface BackendError {
  code: string
  message: string
}

/** Why the proxy refused a statement (a refusal raising `code` went upstream instead of it). */
export interface Denial {
  code: string
  reason: string
}

/** A statement as it is when forwarded: everything but its outcome. */
export type ForwardedStatement = Open['base']

/** A statement prepared by a Parse, under its name. */
export interface Prepared {
  name: string
  text: string
  truncated: boolean
  split: SplitStatement
  /** Why the proxy refused this statement (it was replaced upstream by a refusal), or null. */
  denial: Denial | null
}

export interface Portal {
  name: string
  stmt: Prepared
  parameters: StatementInfo['parameters']
  /**
   * The portal's statement while it runs: one statement even when the client
   * pipelines several row-limited Executes of it.
   */
  open: Open | null
  /** The last Execute stopped at its row limit (PortalSuspended). */
  suspended: boolean
}

/** A statement whose outcome has not been seen yet. */
export interface Open {
  base: Omit<ObservedStatement, 'status' | 'commandTag' | 'rows' | 'sqlstate' | 'message' | 'durationUs'>
  rows: number
}

/** One answer the tracker waits for, in the order the server sends them. */
export type Expect =
  | { kind: 'query'; statements: readonly SplitStatement[]; text: string; truncated: boolean; index: number; current: Open | null; failed: boolean; denial: Denial | null; keyBase: number }
  | { kind: 'parse'; stmt: Prepared; sentAt: number }
  | { kind: 'bind'; portal: Portal; sentAt: number }
  | { kind: 'execute'; portal: Portal; open: Open }
  | { kind: 'function'; open: Open }
  | { kind: 'describe'; target: 'S' | 'P' }
  | { kind: 'close' }
  | { kind: 'sync' }

/**
 * Rows returned or affected. The tag is authoritative, except for a portal
 * run in several Executes (row limit) whose final tag counts only the last
 * batch: there the DataRows we counted are the total.
 */
export function rowsOf(tag: string | null, counted: number, status: OutcomeStatus): number | null {
  const fromTag = tag === null ? null : rowsOfTag(tag)
  if (fromTag !== null) return Math.max(fromTag, counted)
  return status === 'ok' && counted > 0 ? counted : null
}

export function denialOf(e: Expect): Denial | null {
  switch (e.kind) {
    case 'query':
      return e.denial
    case 'execute':
    case 'bind':
      return e.portal.stmt.denial
    case 'parse':
      return e.stmt.denial
    default:
      return null
  }
}

export function statusOf(err: BackendError): OutcomeStatus {
  return err.code === '57014' ? 'cancelled' : 'error'
}

/** Rows from a CommandComplete tag: "INSERT 0 5" → 5, "SELECT 3" → 3, "CREATE TABLE" → null. */
export function rowsOfTag(tag: string): number | null {
  const sp = tag.lastIndexOf(' ')
  if (sp < 0) return null
  const last = tag.slice(sp + 1)
  if (!/^\d+$/.test(last)) return null
  const verb = tag.slice(0, tag.indexOf(' '))
  switch (verb) {
    case 'INSERT': case 'UPDATE': case 'DELETE': case 'SELECT': case 'MERGE':
    case 'FETCH': case 'MOVE': case 'COPY':
      return Number(last)
    default:
      // "CREATE TABLE AS" style tags report rows as "SELECT n"; others carry no count.
      return null
  }
}

/** The NUL-terminated string a body starts with (a CommandComplete tag). */
export function cstring(body: Buffer): string {
  const end = body.indexOf(0)
  return body.toString('utf8', 0, end < 0 ? body.length : end)
}

/** Keep at most maxBytes of UTF-8, never splitting a character. */
export function capText(text: string, maxBytes: number): { text: string; truncated: boolean } {
  if (text.length * 3 <= maxBytes || Buffer.byteLength(text) <= maxBytes) return { text, truncated: false }
  return { text: decodeUtf8Prefix(Buffer.from(text, 'utf8'), 0, maxBytes), truncated: true }
}
