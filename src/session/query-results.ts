/**
 * A simple Query's statements, as the server ran them.
 *
 * The proxy splits a Query with PostgreSQL's own parser, but the server's
 * answers are the ground truth: one CommandComplete / EmptyQueryResponse /
 * ErrorResponse per statement it executed, the rest skipped after an error.
 * When the split agrees with them the records carry the split statements;
 * when it cannot (the text does not parse, the counts differ), there is one
 * record per server result with the whole Query as text, the command from
 * the tag, and `split: "server"`, so no statement the server ran goes
 * unrecorded and none is described as something it was not.
 */
import { isUnparsed, unparsedStatement, type SplitStatement } from '../classify/split.js'
import { commandOfTag, type BackendError } from './tracked-statement.js'

/** One answer of the server to a statement of a Query. */
export interface QueryResult {
  tag: string | null
  error: BackendError | null
  /** EmptyQueryResponse. */
  empty: boolean
  rows: number
  startedAtUs: number
  endedAtUs: number
}

/** The statements to record for a Query's results, one per result, in order. */
export interface ReconciledStatement {
  /** Index into the split statements, or -1 when the record stands for the whole Query (split "server"). */
  index: number
  split: SplitStatement
}

/** Does the parser's split of the Query agree with what the server answered? */
export function splitAgrees(statements: readonly SplitStatement[], results: readonly QueryResult[], exact: boolean, complete = true): boolean {
  if (!exact) return false
  const n = results.length
  const failed = n > 0 && results[n - 1]!.error !== null
  // The server runs statements until one fails; every one it ran answered (unless the session was cut short).
  if (failed || !complete ? n > statements.length : n !== statements.length) return false
  // Text the parser could not read: right only if the server could not either (it ran nothing).
  if (isUnparsed(statements)) return failed && n === 1
  for (let i = 0; i < n; i++) {
    const r = results[i]!
    if (r.empty !== (statements[i]!.command === 'EMPTY QUERY')) return false
  }
  return true
}

/** The records a Query's results stand for. */
export function reconcile(statements: readonly SplitStatement[], results: readonly QueryResult[], text: string, exact: boolean, complete = true): ReconciledStatement[] {
  if (splitAgrees(statements, results, exact, complete)) return results.map((_, i) => ({ index: i, split: statements[i]! }))
  return results.map((r) => ({ index: -1, split: serverSplit(text, r) }))
}

function serverSplit(text: string, r: QueryResult): SplitStatement {
  const command = r.tag !== null ? commandOfTag(r.tag) : r.empty ? 'EMPTY QUERY' : 'UNKNOWN'
  return unparsedStatement(text, command)
}
