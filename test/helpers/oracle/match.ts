/**
 * One session's server statements against its statement records, one to one
 * and in order (the target contract of issue 12):
 *
 * - a simple Query the server ran is matched by the records of its
 *   statements: with the proxy's own split (`statement.split` absent or
 *   "parser") their texts concatenate to a prefix of the logged Query (all of
 *   it when nothing failed) and the last is the error when the Query failed;
 *   with `split: "server"` each text is the whole Query;
 * - an Execute is matched by one extended record with the same text (exactly,
 *   untrimmed), prepared statement name and portal, ok or failed with the
 *   same SQLSTATE;
 * - a refused Parse/Bind (or unparseable simple Query) by one error record
 *   with the same SQLSTATE and the server's STATEMENT text.
 *
 * Records never sent upstream (`denied`) and Executes of an empty prepared
 * statement (which PostgreSQL does not log) are left out. The first mismatch
 * comes back as a readable diff with the pairs around it.
 */
import { describeServerStatement, type ServerStatement } from './server-statements.js'
import { describeRecord, type OracleStatement } from './records.js'

export interface MatchedPair {
  server: ServerStatement
  records: OracleStatement[]
}

export interface MatchResult {
  pairs: MatchedPair[]
  /** null when everything matched. */
  mismatch: string | null
}

/** Records the server log cannot show. */
function comparable(r: OracleStatement): boolean {
  if (r.status === 'denied') return false
  if (r.protocol === 'extended' && r.text === '' && r.status === 'ok') return false
  return true
}

export function matchSession(server: ServerStatement[], allRecords: OracleStatement[]): MatchResult {
  const records = allRecords.filter(comparable)
  const pairs: MatchedPair[] = []
  let j = 0
  for (let i = 0; i < server.length; i++) {
    const s = server[i]!
    const taken: OracleStatement[] = []
    const problem = matchOne(s, records, j, taken)
    if (problem !== null) return { pairs, mismatch: diff(problem, pairs, server.slice(i), records.slice(j)) }
    j += taken.length
    pairs.push({ server: s, records: taken })
  }
  if (j < records.length) {
    return { pairs, mismatch: diff('records left over after the last statement the server logged', pairs, [], records.slice(j)) }
  }
  return { pairs, mismatch: null }
}

/** Takes the records matching `s` from records[j...] into `taken`; returns a problem or null. */
function matchOne(s: ServerStatement, records: OracleStatement[], j: number, taken: OracleStatement[]): string | null {
  const first = records[j]
  if (!first) return 'the server ran this statement; there is no record for it'
  const statusProblem = (r: OracleStatement, end: 'ok' | 'error' | 'unfinished', sqlstate: string | null): string | null => {
    if (end === 'ok' && r.status !== 'ok') return `the server completed it; the record says ${r.status}`
    // 'cancelled' is the record status for an error the client caused on purpose (CopyFail, a cancel): same SQLSTATE.
    if (end === 'error' && ((r.status !== 'error' && r.status !== 'cancelled') || r.sqlstate !== sqlstate))
      return `the server failed it with ${sqlstate}; the record says ${r.status}${r.sqlstate ? ` ${r.sqlstate}` : ''}`
    return null
  }
  switch (s.kind) {
    case 'execute': {
      taken.push(first)
      if (first.protocol !== 'extended') return `an Execute; the record is ${first.protocol}`
      if (first.text !== s.text) return 'the record text differs from the text the server executed'
      if (first.preparedName !== s.preparedName) return 'the record names another prepared statement'
      if (first.portal !== s.portal) return 'the record names another portal'
      return statusProblem(first, s.end, s.sqlstate)
    }
    case 'refused': {
      taken.push(first)
      if (first.status !== 'error' || first.sqlstate !== s.sqlstate)
        return `the server refused a message with ${s.sqlstate}; the record says ${first.status}${first.sqlstate ? ` ${first.sqlstate}` : ''}`
      if (s.text === null) return null
      if (first.protocol === 'simple') {
        return first.text !== null && s.text.startsWith(first.text) ? null : 'the record text is not the refused Query'
      }
      return first.text === s.text ? null : 'the record text differs from the refused text (STATEMENT:)'
    }
    case 'query':
      return matchQuery(s, records, j, taken, statusProblem)
  }
}

function matchQuery(
  s: Extract<ServerStatement, { kind: 'query' }>,
  records: OracleStatement[],
  j: number,
  taken: OracleStatement[],
  statusProblem: (r: OracleStatement, end: 'ok' | 'error' | 'unfinished', sqlstate: string | null) => string | null,
): string | null {
  const isSimple = (r: OracleStatement | undefined): r is OracleStatement => r !== undefined && r.protocol === 'simple'
  const first = records[j]!
  if (first.protocol !== 'simple') {
    taken.push(first)
    return `a simple Query; the record is ${first.protocol}`
  }
  if (first.split === 'server') {
    for (let k = j; isSimple(records[k]) && records[k]!.split === 'server' && records[k]!.text === s.text; k++) {
      taken.push(records[k]!)
      if (records[k]!.status === 'error') break
    }
    if (taken.length === 0) {
      taken.push(first)
      return 'split=server, but the record text is not the whole Query'
    }
  } else {
    let text = ''
    for (let k = j; isSimple(records[k]) && records[k]!.split !== 'server'; k++) {
      const r = records[k]!
      const next = text + (r.text ?? '')
      if (taken.length > 0 && (text === s.text || r.text === '' || !s.text.startsWith(next))) break
      taken.push(r)
      text = next
      if (r.status === 'error') break
    }
    if (!s.text.startsWith(text)) return 'the record texts do not partition the Query (not a prefix of it)'
    if (s.end === 'ok' && text !== s.text) return 'the record texts do not add up to the whole Query'
  }
  const last = taken[taken.length - 1]!
  const early = taken.slice(0, -1).find((r) => r.status !== 'ok')
  if (early) return `a statement before the last of this Query is ${early.status}`
  return statusProblem(last, s.end, s.sqlstate)
}

function diff(problem: string, pairs: MatchedPair[], server: ServerStatement[], records: OracleStatement[]): string {
  const lines = [`first mismatch: ${problem}`, '  matched before it:']
  for (const p of pairs.slice(-3)) {
    lines.push(`    server  ${describeServerStatement(p.server)}`)
    for (const r of p.records) lines.push(`    record  ${describeRecord(r)}`)
  }
  if (pairs.length === 0) lines.push('    (nothing)')
  lines.push('  server log from the mismatch on:')
  for (const s of server.slice(0, 4)) lines.push(`    ${describeServerStatement(s)}`)
  if (server.length === 0) lines.push('    (nothing)')
  lines.push('  records from the mismatch on:')
  for (const r of records.slice(0, 4)) lines.push(`    ${describeRecord(r)}`)
  if (records.length === 0) lines.push('    (nothing)')
  return lines.join('\n')
}
