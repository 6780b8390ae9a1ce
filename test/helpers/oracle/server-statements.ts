/**
 * What one server session ran, from its log entries: simple Queries,
 * Executes (including `execute fetch from` continuations of a suspended
 * portal) and Parse/Bind messages the server refused, each with how it ended.
 *
 * - `statement: Q` opens a simple Query; `execute S[/P]: T` opens an Execute.
 * - A bare `duration: N ms` closes the open one as completed (PostgreSQL
 *   prints the bare form for messages log_statement already logged);
 *   `duration: N ms  parse|bind ...` are completed Parse/Bind messages.
 * - An ERROR while something is open is that statement's error; an ERROR with
 *   nothing open is a message the server refused before running anything (a
 *   Parse, a Bind, or a simple Query that did not parse), whose STATEMENT line
 *   is the refused text.
 * - PostgreSQL logs nothing for the Execute of an empty prepared statement
 *   (exec_execute_message returns before logging), so those never appear here.
 */
import type { LogEntry } from './server-log.js'

export type EndState = 'ok' | 'error' | 'unfinished'

export type ServerStatement =
  | { kind: 'query'; text: string; end: EndState; sqlstate: string | null }
  | {
      kind: 'execute'
      fetch: boolean
      preparedName: string
      portal: string
      text: string
      parameters: string | null
      end: EndState
      sqlstate: string | null
    }
  | { kind: 'refused'; text: string | null; sqlstate: string | null; message: string }

export interface ServerSession {
  sessionId: string
  statements: ServerStatement[]
  /** The server logged the disconnection (log_disconnections): nothing more will come. */
  disconnected: boolean
}

/**
 * Statements the proxy itself runs on a fresh upstream connection (before the
 * client's first byte), not the client's: the session id query of
 * src/upstream/connect.ts. They have no statement record by design.
 */
const PROXY_OWN_QUERY_PREFIXES = ["SELECT pg_catalog.to_hex(pg_catalog.floor(pg_catalog.date_part('epoch', a.backend_start))"]

const EXECUTE = /^execute( fetch from)? ([^:]*?): /
const BARE_DURATION = /^duration: [0-9.]+ ms$/

export function serverSession(sessionId: string, entries: LogEntry[]): ServerSession {
  const statements: ServerStatement[] = []
  let open: Extract<ServerStatement, { kind: 'query' | 'execute' }> | null = null
  let disconnected = false
  for (const e of entries) {
    if (e.level === 'LOG') {
      if (e.message.startsWith('statement: ')) {
        const text = e.message.slice('statement: '.length)
        open = { kind: 'query', text, end: 'unfinished', sqlstate: null }
        if (!PROXY_OWN_QUERY_PREFIXES.some((p) => text.startsWith(p))) statements.push(open)
        continue
      }
      const ex = EXECUTE.exec(e.message)
      if (ex) {
        const names = ex[2]!
        const slash = names.indexOf('/')
        const statement = slash < 0 ? names : names.slice(0, slash)
        open = {
          kind: 'execute',
          fetch: ex[1] !== undefined,
          preparedName: statement === '<unnamed>' ? '' : statement,
          portal: slash < 0 ? '' : names.slice(slash + 1),
          text: e.message.slice(ex[0].length),
          parameters: e.detail?.startsWith('parameters: ') ? e.detail.slice('parameters: '.length) : null,
          end: 'unfinished',
          sqlstate: null,
        }
        statements.push(open)
        continue
      }
      if (BARE_DURATION.test(e.message)) {
        if (open) open.end = 'ok'
        open = null
        continue
      }
      if (e.message.startsWith('disconnection: ')) disconnected = true
      continue
    }
    if (e.level === 'ERROR' || e.level === 'FATAL' || e.level === 'PANIC') {
      if (open) {
        open.end = 'error'
        open.sqlstate = e.sqlstate
        open = null
      } else if (e.level === 'ERROR') {
        statements.push({ kind: 'refused', text: e.statement, sqlstate: e.sqlstate, message: e.message })
      }
    }
  }
  return { sessionId, statements, disconnected }
}

/** One line describing a server statement, for diffs. */
export function describeServerStatement(s: ServerStatement): string {
  switch (s.kind) {
    case 'query':
      return `Query ${JSON.stringify(s.text)} → ${s.end}${s.sqlstate ? ` ${s.sqlstate}` : ''}`
    case 'execute':
      return (
        `Execute${s.fetch ? ' (fetch)' : ''} ${JSON.stringify(s.preparedName)}/${JSON.stringify(s.portal)} ` +
        `${JSON.stringify(s.text)} → ${s.end}${s.sqlstate ? ` ${s.sqlstate}` : ''}`
      )
    case 'refused':
      return `refused ${s.sqlstate ?? '?'} (${s.message}) text ${s.text === null ? '(none logged)' : JSON.stringify(s.text)}`
  }
}
