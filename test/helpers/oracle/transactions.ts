/**
 * Transaction effects as the records state them (target contract): every
 * statement record carries `statement.transaction`; every explicit or
 * implicit transaction has a `transaction.end` in its session covering its
 * statements; a statement's effect survives iff its transaction committed
 * (or was prepared and later COMMIT PREPARED, in any session) and its seq is
 * not in `undone_seqs` (ROLLBACK TO SAVEPOINT).
 */
import type { OracleStatement, OracleTransactionEnd, SessionRecords } from './records.js'

export type Fate = 'kept' | 'undone' | 'no_effect' | 'pending' | 'unknown'

/** Problems with the transaction fields of one session's records (empty when all is well). */
export function transactionProblems(s: SessionRecords): string[] {
  const problems: string[] = []
  const ends = new Map<number, OracleTransactionEnd>()
  for (const e of s.transactionEnds) {
    if (ends.has(e.number)) problems.push(`two transaction.end records for transaction ${e.number}`)
    ends.set(e.number, e)
    if (!['committed', 'rolled_back', 'prepared'].includes(e.outcome)) problems.push(`transaction.end ${e.number}: outcome ${e.outcome}`)
  }
  for (const r of s.statements) {
    if (r.status === 'denied') continue
    if (!r.transaction) {
      problems.push(`seq ${r.seq} ${JSON.stringify(r.text)}: no statement.transaction`)
      continue
    }
    if (r.transaction.kind === 'autocommit') continue
    const end = ends.get(r.transaction.number)
    if (!end) {
      problems.push(`seq ${r.seq} ${JSON.stringify(r.text)}: ${r.transaction.kind} transaction ${r.transaction.number} has no transaction.end`)
    } else if (end.firstSeq === null || end.lastSeq === null || r.seq < end.firstSeq || r.seq > end.lastSeq) {
      problems.push(`seq ${r.seq}: outside first_seq..last_seq (${end.firstSeq}..${end.lastSeq}) of transaction.end ${end.number}`)
    }
  }
  return problems.slice(0, 10)
}

const GID_STATEMENT = /^\s*(commit|rollback)\s+prepared\s+'((?:[^']|'')*)'/i

/** How each prepared transaction (by GID) finally ended, from every session's records. */
export function preparedOutcomes(all: Iterable<SessionRecords>): Map<string, 'kept' | 'undone'> {
  const out = new Map<string, 'kept' | 'undone'>()
  for (const s of all) {
    for (const e of s.transactionEnds) {
      if (e.gid !== null && e.outcome !== 'prepared') out.set(e.gid, e.outcome === 'committed' ? 'kept' : 'undone')
    }
    for (const r of s.statements) {
      const m = r.status === 'ok' && r.text !== null ? GID_STATEMENT.exec(r.text) : null
      if (m && !out.has(m[2]!.replace(/''/g, "'"))) out.set(m[2]!.replace(/''/g, "'"), m[1]!.toLowerCase() === 'commit' ? 'kept' : 'undone')
    }
  }
  return out
}

/** The effect a statement record says its statement had in the end. */
export function fateOf(r: OracleStatement, session: SessionRecords, prepared: Map<string, 'kept' | 'undone'>): Fate {
  if (r.status !== 'ok') return 'no_effect'
  if (!r.transaction) return 'unknown'
  if (r.transaction.kind === 'autocommit') return 'kept'
  const end = session.transactionEnds.find((e) => e.number === r.transaction!.number)
  if (!end) return 'unknown'
  if (end.undoneSeqs.includes(r.seq)) return 'undone'
  if (end.outcome === 'committed') return 'kept'
  if (end.outcome === 'rolled_back') return 'undone'
  if (end.outcome === 'prepared') return end.gid === null ? 'unknown' : (prepared.get(end.gid) ?? 'pending')
  return 'unknown'
}
