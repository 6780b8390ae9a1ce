/** `policy[].replication` — which replication connections a rule admits (none unless it says so). */
import { fail, type KeyPath, shown } from './errors.js'
import type { Reader } from './reader.js'
import type { ReplicationMode } from './types.js'

const MODES: readonly ReplicationMode[] = ['logical', 'physical']

/**
 * `replication: logical`, `physical`, or a list of both. Absent: the rule
 * admits no replication connection. Neither mode implies the other: a
 * physical stream carries every database of the cluster, a logical one
 * decodes a single database, and an operator grants each on purpose.
 */
export function parseReplication(r: Reader, v: unknown, path: KeyPath): ReplicationMode[] {
  if (v === undefined || v === null) return []
  const values = typeof v === 'string' ? [r.string(v, path)] : r.stringList(v, path, true)
  for (const [i, m] of values.entries()) {
    if (!(MODES as readonly string[]).includes(m)) {
      fail(typeof v === 'string' ? path : [...path, i], `must be logical or physical (got ${shown(m)})`)
    }
  }
  return [...new Set(values)] as ReplicationMode[]
}
