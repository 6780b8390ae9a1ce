/**
 * Privileged activity: DDL, ROLE and refused statements (and those a
 * monitor-mode rule would have refused) — who, when, which
 * session, objects, outcome, the transaction's effect (committed, rolled
 * back…) and the approval or ticket when there is one. The effect of a
 * statement in a transaction is known only at its transaction.end, so rows
 * wait for it (bounded by the transactions open at once) before they are
 * written to privileged.csv; the first ROWS_CAP are kept for the page.
 */
import type { StatementRecord, TransactionEndRecord } from '../evidence/types.js'
import { CsvWriter } from './csv.js'
import { identityKey, isPrivileged, objectsOf, pushCapped, ticketOf, type SeenRecord, type Section } from './record-facts.js'

export const PRIVILEGED_ROWS_CAP = 2_000

export interface PrivilegedRow {
  seq: number
  time: string
  identity: string
  role: string
  database: string
  session: string
  statement_seq: number
  classes: string[]
  command: string
  objects: string
  text: string | null
  status: string
  sqlstate: string | null
  /** committed, rolled_back, rolled_back_to_savepoint, prepared, not_run (denied or failed), unknown (no transaction.end in the log). */
  effect: string
  ticket: string | null
  /** The statement rule that refused it, or that would have (monitor mode). */
  rule: string | null
  intact: boolean
}

export const PRIVILEGED_CSV_HEADER = ['seq', 'time', 'identity', 'role', 'database', 'session', 'statement_seq', 'classes', 'command', 'objects', 'status', 'sqlstate', 'effect', 'ticket', 'rule', 'intact', 'text']

export class PrivilegedActivity implements Section {
  readonly rows: PrivilegedRow[] = []
  total = 0
  private readonly pending = new Map<string, PrivilegedRow[]>()

  constructor(private readonly ticketClaims: readonly string[], private readonly csv: CsvWriter) {}

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type === 'transaction.end') return this.transactionEnd(rec)
    if (rec.type !== 'statement' || !isPrivileged(rec)) return
    this.total++
    const hit = rec.policy?.denied_by ?? rec.policy?.would_deny?.[0]
    const row: PrivilegedRow = {
      seq: rec.chain.seq,
      time: rec.time,
      identity: identityKey(rec.identity)!,
      role: rec.upstream.role,
      database: rec.upstream.database,
      session: rec.session.id,
      statement_seq: rec.statement.seq,
      classes: rec.statement.classes,
      command: rec.statement.command,
      objects: objectsOf(rec),
      text: rec.statement.text,
      status: rec.outcome.status,
      sqlstate: rec.outcome.sqlstate,
      effect: immediateEffect(rec),
      ticket: ticketOf(rec, this.ticketClaims),
      rule: hit === undefined ? null : `${hit.rule}/${hit.statement_rule}${rec.policy?.denied_by ? '' : ' (monitor: would deny)'}`,
      intact: r.intact,
    }
    pushCapped(this.rows, row, PRIVILEGED_ROWS_CAP)
    if (row.effect !== 'pending') return this.write(row)
    const key = `${rec.session.id}/${rec.statement.transaction.number}`
    const list = this.pending.get(key)
    if (list === undefined) this.pending.set(key, [row])
    else list.push(row)
  }

  private transactionEnd(rec: TransactionEndRecord): void {
    const key = `${rec.session.id}/${rec.transaction.number}`
    const list = this.pending.get(key)
    if (list === undefined) return
    this.pending.delete(key)
    for (const row of list) {
      const undone = rec.transaction.undone_seqs.some((u) => row.statement_seq >= u.first && row.statement_seq <= u.last)
      row.effect = undone ? 'rolled_back_to_savepoint' : rec.transaction.outcome
      this.write(row)
    }
  }

  private write(row: PrivilegedRow): void {
    this.csv.row([row.seq, row.time, row.identity, row.role, row.database, row.session, row.statement_seq, row.classes.join(' '), row.command, row.objects, row.status, row.sqlstate, row.effect, row.ticket, row.rule, row.intact, row.text])
  }

  /** At the end of the log: transactions that never ended in it. */
  finish(): void {
    for (const list of this.pending.values()) {
      for (const row of list) {
        row.effect = 'unknown'
        this.write(row)
      }
    }
    this.pending.clear()
  }
}

/** The effect known from the statement alone, or `pending` until its transaction ends. */
function immediateEffect(s: StatementRecord): string {
  const st = s.outcome.status
  if (st === 'denied' || st === 'cancelled') return 'not_run'
  const kind = s.statement.transaction.kind
  if (kind === 'autocommit') return st === 'ok' ? 'committed' : st === 'error' ? 'not_run' : 'unknown'
  if (kind === 'unknown') return 'unknown'
  return 'pending'
}
