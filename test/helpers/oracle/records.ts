/**
 * The oracle's reading of the audit log: statement and transaction.end
 * records per upstream server session, in log order, reduced to the fields
 * the oracle compares. Read as plain JSON (not the src types) because the
 * target contract has fields the landed schema does not have yet
 * (`statement.split`, `statement.transaction`, type `transaction.end`); a
 * field missing on a record reads as undefined and the checks say so.
 */
import { readAuditLog } from '../audit.js'

export interface TransactionRef {
  number: number
  kind: 'explicit' | 'implicit' | 'autocommit'
}

export interface OracleStatement {
  /** Governed session id (session.id). */
  session: string
  serverSessionId: string
  seq: number
  protocol: string
  text: string | null
  preparedName: string | null
  portal: string | null
  command: string
  /** "parser" | "server" | undefined (absent means "parser"). */
  split: string | undefined
  transaction: TransactionRef | undefined
  parameters: unknown
  status: string
  sqlstate: string | null
  commandTag: string | null
  rows: number | null
}

export interface OracleTransactionEnd {
  session: string
  serverSessionId: string
  number: number
  outcome: string
  cause: string | null
  gid: string | null
  firstSeq: number | null
  lastSeq: number | null
  undoneSeqs: number[]
}

export interface SessionRecords {
  session: string
  serverSessionId: string
  applicationName: string | null
  statements: OracleStatement[]
  transactionEnds: OracleTransactionEnd[]
  ended: boolean
}

type Json = Record<string, any>

/** A field of the transaction.end record, wherever the writer put it (`transaction.x` or top level). */
function txField(r: Json, name: string): unknown {
  const inner = r['transaction'] as Json | undefined
  if (inner && typeof inner === 'object' && name in inner) return inner[name]
  const top = r[name]
  // A statement-style `outcome` object is not a transaction outcome.
  return typeof top === 'object' && top !== null && !Array.isArray(top) ? undefined : top
}

function toStatement(r: Json): OracleStatement {
  const st = r['statement'] as Json
  const out = r['outcome'] as Json
  const tx = st['transaction'] as Json | undefined
  return {
    session: r['session']['id'],
    serverSessionId: r['upstream']['server_session_id'],
    seq: st['seq'],
    protocol: st['protocol'],
    text: st['text'],
    preparedName: st['prepared_name'],
    portal: st['portal'],
    command: st['command'],
    split: st['split'],
    transaction:
      tx && typeof tx === 'object' && typeof tx['number'] === 'number' && typeof tx['kind'] === 'string'
        ? { number: tx['number'] as number, kind: tx['kind'] as TransactionRef['kind'] }
        : undefined,
    parameters: st['parameters'],
    status: out['status'],
    sqlstate: out['sqlstate'],
    commandTag: out['command_tag'],
    rows: out['rows'],
  }
}

function toTransactionEnd(r: Json): OracleTransactionEnd {
  const num = (v: unknown): number | null => (typeof v === 'number' ? v : null)
  const undone = txField(r, 'undone_seqs')
  return {
    session: r['session']['id'],
    serverSessionId: r['upstream']?.['server_session_id'],
    number: num(txField(r, 'number')) ?? -1,
    outcome: String(txField(r, 'outcome')),
    cause: (txField(r, 'cause') as string | undefined) ?? null,
    gid: (txField(r, 'gid') as string | undefined) ?? null,
    firstSeq: num(txField(r, 'first_seq')),
    lastSeq: num(txField(r, 'last_seq')),
    undoneSeqs: Array.isArray(undone) ? expandRanges(undone as Array<{ first: number; last: number }>) : [],
  }
}

/** Every governed session in the audit log, by governed session id, records in log order. */
export function readSessions(auditPath: string): Map<string, SessionRecords> {
  const sessions = new Map<string, SessionRecords>()
  for (const rec of readAuditLog(auditPath) as unknown as Json[]) {
    const type = rec['type'] as string
    if (type === 'session.start') {
      sessions.set(rec['session']['id'], {
        session: rec['session']['id'],
        serverSessionId: rec['upstream']['server_session_id'],
        applicationName: rec['session']['application_name'] ?? null,
        statements: [],
        transactionEnds: [],
        ended: false,
      })
      continue
    }
    const s = rec['session'] ? sessions.get(rec['session']['id']) : undefined
    if (!s) continue
    if (type === 'statement') s.statements.push(toStatement(rec))
    else if (type === 'transaction.end') s.transactionEnds.push(toTransactionEnd(rec))
    else if (type === 'session.end') s.ended = true
  }
  return sessions
}

/** One line describing a statement record, for diffs. */
export function describeRecord(r: OracleStatement): string {
  const names = r.protocol === 'extended' ? ` ${JSON.stringify(r.preparedName)}/${JSON.stringify(r.portal)}` : ''
  const split = r.split === 'server' ? ' split=server' : ''
  const status = r.status === 'error' ? `error ${r.sqlstate}` : r.status
  return `seq ${r.seq} ${r.protocol}${names} ${JSON.stringify(r.text)} ${r.command}${split} → ${status} tag=${r.commandTag ?? '-'} rows=${r.rows ?? '-'}`
}

/** undone_seqs holds inclusive ranges { first, last, savepoint }: the statement seqs they cover. */
function expandRanges(ranges: Array<{ first: number; last: number }>): number[] {
  const out: number[] = []
  for (const r of ranges) for (let s = r.first; s <= r.last; s++) out.push(s)
  return out
}
