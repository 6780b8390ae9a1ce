/**
 * The oracle's reading of PostgreSQL's own log: what the server says it ran,
 * session by session (`%c`), independent of anything the proxy wrote.
 *
 * The harness prints every line as `%m [%p] %c LEVEL:  message`; the oracle
 * cluster also sets `log_error_verbosity = verbose` (so each message carries
 * its SQLSTATE and a LOCATION line naming the server function that raised
 * it) and `log_min_duration_statement = 0` (so each protocol message the
 * server completed logs a `duration:` line — the only way to tell "this
 * Execute finished" from "this Execute is still the one failing"). A
 * message's own newlines continue on following lines indented by one tab.
 * One backend writes each message (with its DETAIL/STATEMENT/LOCATION lines)
 * in a single write, so lines of one entry are never interleaved with
 * another backend's.
 */

/** One log message with its attached lines. */
export interface LogEntry {
  sessionId: string
  pid: number
  /** LOG, ERROR, FATAL, WARNING, NOTICE, ... */
  level: string
  /** The SQLSTATE printed by verbose error verbosity (null when not verbose). */
  sqlstate: string | null
  message: string
  detail: string | null
  /** The STATEMENT: line (log_min_error_statement): the text the server was running. */
  statement: string | null
  /** The function name of the LOCATION: line, e.g. `exec_bind_message`. */
  location: string | null
}

const HEAD = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] (\S*) ([A-Z]+[0-9]?):  (.*)$/
/** Lines that belong to the message before them rather than starting one. */
const ATTACHED = new Set(['DETAIL', 'HINT', 'CONTEXT', 'QUERY', 'STATEMENT', 'LOCATION'])
const SQLSTATE_PREFIX = /^([0-9A-Z]{5}): /

/** Every log message, in log order (lines that fit no message, e.g. a tool's stderr, are skipped). */
export function parseServerLog(text: string): LogEntry[] {
  const entries: LogEntry[] = []
  let current: LogEntry | null = null
  // The field a continuation line extends.
  let field: 'message' | 'detail' | 'statement' | null = null
  for (const line of text.split('\n')) {
    if (line.startsWith('\t')) {
      if (current && field) current[field] = `${current[field] ?? ''}\n${line.slice(1)}`
      continue
    }
    const m = HEAD.exec(line)
    if (!m) {
      field = null
      continue
    }
    const [, pid, sessionId, level, rest] = m as unknown as [string, string, string, string, string]
    if (ATTACHED.has(level) && current && current.sessionId === sessionId) {
      field = null
      if (level === 'DETAIL') {
        current.detail = rest
        field = 'detail'
      } else if (level === 'STATEMENT') {
        current.statement = rest
        field = 'statement'
      } else if (level === 'LOCATION') {
        current.location = rest.split(',')[0] ?? null
      }
      continue
    }
    const state = SQLSTATE_PREFIX.exec(rest)
    current = {
      sessionId,
      pid: Number(pid),
      level,
      sqlstate: state ? state[1]! : null,
      message: state ? rest.slice(state[0].length) : rest,
      detail: null,
      statement: null,
      location: null,
    }
    field = 'message'
    entries.push(current)
  }
  return entries
}

/** Entries grouped by `%c`, each list in log order. */
export function entriesBySession(entries: LogEntry[]): Map<string, LogEntry[]> {
  const out = new Map<string, LogEntry[]>()
  for (const e of entries) {
    let list = out.get(e.sessionId)
    if (!list) out.set(e.sessionId, (list = []))
    list.push(e)
  }
  return out
}
