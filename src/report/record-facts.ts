/**
 * Small facts the report's sections read off audit records: who an identity
 * is (one key per issuer + subject), object names, the approval or change
 * ticket a statement carries, and whether a statement is privileged.
 */
import type { AuditRecord, IdentityInfo, StatementRecord } from '../evidence/types.js'

/** One record as the sections see it: parsed, its time, and whether the chain vouches for it. */
export interface SeenRecord {
  rec: AuditRecord
  /** Epoch ms of rec.time. */
  ms: number
  /** False for records at or after the first integrity problem. */
  intact: boolean
}

export interface Section {
  add(r: SeenRecord): void
}

export function identityKey(id: Partial<IdentityInfo> | null | undefined): string | null {
  if (id === null || id === undefined || typeof id.subject !== 'string') return null
  return `${id.subject} (${id.issuer ?? '?'})`
}

export function objectName(o: { schema: string | null; name: string }): string {
  return o.schema === null ? o.name : `${o.schema}.${o.name}`
}

export function objectsOf(s: StatementRecord): string {
  return s.statement.objects.map(objectName).join(' ')
}

export const PRIVILEGED_CLASSES = ['DDL', 'ROLE']

/** A DDL or ROLE statement: changes schema or privileges. */
export function changesSchemaOrRoles(s: StatementRecord): boolean {
  return s.statement.classes.some((c) => PRIVILEGED_CLASSES.includes(c))
}

/** What the privileged-activity section lists: DDL and ROLE statements, refused ones, and ones a monitor-mode rule would have refused. */
export function isPrivileged(s: StatementRecord): boolean {
  return s.outcome.status === 'denied' || s.policy?.would_deny !== undefined || changesSchemaOrRoles(s)
}

/**
 * The approval or change ticket behind a statement: a recorded approval
 * (when the proxy records one), a claim that statement rules asked for, or
 * a ticket claim of the identity.
 */
export function ticketOf(s: StatementRecord, ticketClaims: readonly string[]): string | null {
  const approval = (s as { approval?: { id?: unknown; ticket?: unknown } }).approval
  if (approval && (typeof approval.ticket === 'string' || typeof approval.id === 'string')) return String(approval.ticket ?? approval.id)
  for (const claims of [s.policy?.claims, s.identity.claims]) {
    if (!claims) continue
    for (const k of ticketClaims) {
      const v = claims[k]
      if (v !== undefined && v !== null && v !== '') return typeof v === 'string' ? v : JSON.stringify(v)
    }
  }
  return null
}

/** Rows a read returned: over all Executes of a portal when the record says so. */
export function rowsOf(s: StatementRecord): number | null {
  return s.outcome.portal_rows ?? s.outcome.rows
}

/** A statement's place in its session, for links between sections: `session/seq`. */
export function refOf(r: SeenRecord): RecordRef {
  const rec = r.rec
  return {
    seq: rec.chain.seq,
    time: rec.time,
    type: rec.type,
    session: 'session' in rec ? rec.session.id : null,
    intact: r.intact,
  }
}

export interface RecordRef {
  /** chain.seq: the record's place in the log. */
  seq: number
  time: string
  type: string
  session: string | null
  intact: boolean
}

/** Keep at most `cap` items: the first ones (tables are in log order). */
export function pushCapped<T>(list: T[], item: T, cap: number): void {
  if (list.length < cap) list.push(item)
}

/** Increment a counter in a map with at most `cap` keys (new keys beyond it are counted under `overflow`). */
export function bump(map: Map<string, number>, key: string, cap: number, by = 1): void {
  const n = map.get(key)
  if (n !== undefined) map.set(key, n + by)
  else if (map.size < cap) map.set(key, by)
  else map.set('(more)', (map.get('(more)') ?? 0) + by)
}

export function topEntries(map: Map<string, number>, n = Infinity): Array<{ key: string; count: number }> {
  return [...map].map(([key, count]) => ({ key, count })).sort((a, b) => b.count - a.count || a.key.localeCompare(b.key)).slice(0, n)
}

export function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString()
}
