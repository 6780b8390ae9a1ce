/**
 * What a classification is, and the state a walk builds it in: the public
 * result types, the class bits, CTE scopes and the de-duplicated object list.
 */

import { sval, type Node } from './names.js'

/** REPLICATION: a replication command on a replication connection (src/replication/commands.ts), never from the SQL walk. */
export type AuditClass = 'READ' | 'WRITE' | 'FUNCTION' | 'ROLE' | 'DDL' | 'MISC' | 'MISC_SET' | 'REPLICATION'

/** Every class, in the order `classes` lists them. */
export const AUDIT_CLASSES: readonly AuditClass[] = Object.freeze([
  'READ', 'WRITE', 'FUNCTION', 'ROLE', 'DDL', 'MISC', 'MISC_SET', 'REPLICATION',
] as const)

export interface StatementObject {
  type:
    | 'table'
    | 'view'
    | 'sequence'
    | 'function'
    | 'procedure'
    | 'role'
    | 'schema'
    | 'database'
    | 'index'
    | 'type'
    | 'relation'
    | (string & {})
  schema: string | null
  name: string
}

export interface Classification {
  classes: AuditClass[]
  objects: StatementObject[]
}

export const READ = 1
export const WRITE = 2
export const FUNCTION = 4
export const ROLE = 8
export const DDL = 16
export const MISC = 32
export const MISC_SET = 64

const CLASS_BITS: ReadonlyArray<readonly [number, AuditClass]> = [
  [READ, 'READ'],
  [WRITE, 'WRITE'],
  [FUNCTION, 'FUNCTION'],
  [ROLE, 'ROLE'],
  [DDL, 'DDL'],
  [MISC, 'MISC'],
  [MISC_SET, 'MISC_SET'],
]

export function classesOf(bits: number): AuditClass[] {
  const out: AuditClass[] = []
  for (const [bit, name] of CLASS_BITS) if (bits & bit) out.push(name)
  return out
}

export interface Scope {
  names: string[]
  parent: Scope | null
}

export interface Walk {
  cls: number
  objects: StatementObject[]
  scope: Scope | null
  /** Whether the part being walked is executed by this statement (DML, SELECT, COPY, …) rather than stored (DDL). */
  exec: boolean
  /**
   * classes.ts's statement(), for statements nested in the one walked:
   * passed in, so that objects.ts need not import classes.ts (which imports it).
   */
  statement: (w: Walk, type: string, b: Node) => void
}

/** Types of relations (one namespace in PostgreSQL: a name is only one of them). */
const RELATION_TYPES = new Set(['relation', 'table', 'view', 'materialized view', 'foreign table', 'sequence'])

export function add(w: Walk, type: string, schema: string | null, name: string): void {
  const objs = w.objects
  const rel = RELATION_TYPES.has(type)
  for (let i = 0; i < objs.length; i++) {
    const o = objs[i]!
    if (o.name !== name || o.schema !== schema) continue
    if (o.type === type) return
    if (rel && RELATION_TYPES.has(o.type)) {
      // The same relation seen generically and by its kind: keep one entry, with the more precise type.
      if (o.type === 'relation') o.type = type
      return
    }
  }
  objs.push({ type, schema, name })
}

/** Adds an object named by a list of String nodes: name, schema.name or catalog.schema.name. */
export function addNames(w: Walk, type: string, names: unknown, dropLast = 0): void {
  if (!Array.isArray(names)) return
  const n = names.length - dropLast
  if (n <= 0) return
  const name = sval(names[n - 1])
  if (name === undefined) return
  const schema = n >= 2 ? (sval(names[n - 2]) ?? null) : null
  add(w, type, schema, name)
}
