/**
 * Effects checked against the server: workloads insert unique marker values
 * (`mk-<tag>-<n>`) into table `marks`; after the workload a direct
 * connection lists which markers exist, and each INSERT record carrying a
 * marker (in its text or its text parameters) must agree: kept → the row
 * exists; rolled back, undone, failed or still prepared → it does not; and
 * no marker row exists that no kept record accounts for.
 */
import { fateOf, preparedOutcomes } from './transactions.js'
import type { OracleStatement, SessionRecords } from './records.js'

const MARKER = /mk-[0-9a-z]+-[0-9a-z]+/g

export function markersOf(r: OracleStatement): string[] {
  const found = new Set<string>()
  for (const m of (r.text ?? '').matchAll(MARKER)) found.add(m[0])
  if (Array.isArray(r.parameters)) {
    for (const p of r.parameters as Array<{ format?: string; value?: string } | null>) {
      if (p?.format === 'text' && typeof p.value === 'string') for (const m of p.value.matchAll(MARKER)) found.add(m[0])
    }
  }
  return [...found]
}

/**
 * Problems (at most 10) comparing the records of `sessions` with the marker
 * rows that exist (`existing`, restricted to markers starting with `prefix`).
 * `all` is every session in the log (COMMIT PREPARED may run in another).
 */
export function markerProblems(
  sessions: SessionRecords[],
  all: Iterable<SessionRecords>,
  existing: Set<string>,
  prefix: string,
): string[] {
  const prepared = preparedOutcomes(all)
  const problems: string[] = []
  const accounted = new Set<string>()
  for (const s of sessions) {
    for (const r of s.statements) {
      if (r.command !== 'INSERT' || r.split === 'server') continue
      const fate = fateOf(r, s, prepared)
      for (const m of markersOf(r).filter((m) => m.startsWith(prefix))) {
        const there = existing.has(m)
        if (fate === 'kept') accounted.add(m)
        if (fate === 'unknown') problems.push(`${m}: seq ${r.seq} ${JSON.stringify(r.text)}: the records do not say whether it took effect`)
        else if (fate === 'kept' && !there) problems.push(`${m}: seq ${r.seq} is recorded as kept, but the row does not exist`)
        else if (fate !== 'kept' && there) problems.push(`${m}: seq ${r.seq} is recorded as ${fate}, but the row exists`)
      }
    }
  }
  for (const m of existing) {
    if (m.startsWith(prefix) && !accounted.has(m)) problems.push(`${m}: the row exists, but no record says an INSERT of it was kept`)
  }
  return [...new Set(problems)].slice(0, 10)
}
