/**
 * What the StatementTracker (statement-tracker.ts) knows about a statement
 * between its request and its response, and the pure rules that turn a
 * server's answer into the statement's recorded outcome.
 */
import type { ObservedStatement } from '../evidence/observed.js'
import type { OutcomeStatus, StatementInfo, StatementPolicyInfo } from '../evidence/types.js'
import type { SplitStatement, TextOrigin } from '../classify/split.js'
import { decodeUtf8Prefix } from '../util/utf8.js'

export type { ObservedStatement }

/** The parts of an ObservedStatement known before the server answers. */
export type StatementBase = Pick<ObservedStatement,
  'key' | 'protocol' | 'text' | 'textTruncated' | 'parameters' | 'preparedName' | 'portal' | 'functionOid' |
  'command' | 'classes' | 'objects' | 'node' | 'split' | 'governedSettingChanged' | 'textOrigin' | 'policy' | 'startedAtUs'>

/** A statement as it is when forwarded: everything but its outcome and its place in the session. */
export type ForwardedStatement = StatementBase

export interface BackendError {
  code: string
  message: string
}

/**
 * How a Query or Parse text was sent: the proxy's refusal, when it refused
 * it; its origin (encoding, raw bytes); a way to read it again (Rereadable);
 * and the statement rules' verdicts, one per statement of its split.
 */
export interface SentText {
  denial?: Denial | null
  origin?: TextOrigin | undefined
  reread?: RereadableText | null
  policies?: ReadonlyArray<StatementPolicyInfo | null> | null
  /**
   * The Query is this replication command (src/replication/commands.ts):
   * one statement, whatever number of results the walsender sends for it
   * (BASE_BACKUP sends several result sets before its own CommandComplete).
   */
  replication?: SplitStatement | undefined
}

/** Why the proxy refused a statement (a refusal raising `code` went upstream instead of it). */
export interface Denial {
  code: string
  reason: string
}

/** A statement prepared by a Parse, under its name (server-accepted once in ProtocolState). */
export interface Prepared {
  name: string
  /** The whole text of the Parse (capped), exactly as sent. */
  text: string
  truncated: boolean
  /** How the text is described: its one statement, or UNKNOWN (several statements, unparseable). */
  split: SplitStatement
  /** Why the proxy refused this statement (it was replaced upstream by a refusal), or null. */
  denial: Denial | null
}

/** A portal the server created (BindComplete): a snapshot of the statement it runs. */
export interface Portal {
  name: string
  stmt: Prepared
  parameters: StatementInfo['parameters']
  /** Executes of this portal so far, and the rows they returned (for the total on the last). */
  executions: number
  rows: number
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

/** The command a tag names: "INSERT 0 5" → INSERT, "SELECT 3" → SELECT, "CREATE TABLE" → CREATE TABLE. */
export function commandOfTag(tag: string): string {
  return tag.replace(/( \d+)+$/, '')
}

/** Rows returned or affected: the tag's count where it has one, else the DataRows counted. */
export function rowsOf(tag: string | null, counted: number, status: OutcomeStatus): number | null {
  const fromTag = tag === null ? null : rowsOfTag(tag)
  if (fromTag !== null) return Math.max(fromTag, counted)
  return (status === 'ok' && counted > 0) ? counted : null
}

export function statusOf(err: BackendError): OutcomeStatus {
  return err.code === '57014' ? 'cancelled' : 'error'
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

/**
 * Something read from the client's bytes (a Query or Parse text, a Bind's
 * text parameters) whose reading depends on the session's client_encoding or
 * standard_conforming_strings (non-ASCII bytes, a backslash): the settings it
 * was read under, and how to read it again under the settings then in force.
 */
export interface Rereadable<T> {
  readUnder: string
  again: () => T
}

export type RereadableText = Rereadable<{ text: string; origin: TextOrigin | undefined }>
export type RereadableParameters = Rereadable<StatementInfo['parameters']>
