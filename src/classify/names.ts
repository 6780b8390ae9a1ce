/**
 * How parse trees name things, independent of any walk: String nodes, lists
 * of DefElems, wrapped or bare RangeVars, OBJECT_* kinds and the shapes their
 * names take, and regclass-style text names.
 */

import { OBJECT_KIND_NOUNS } from './object-kinds.js'

export type Node = Record<string, unknown>

/** Kinds whose (qualified) name ends with a relation name, then the object's own name. */
export const ON_RELATION = new Set(['OBJECT_TRIGGER', 'OBJECT_POLICY', 'OBJECT_RULE', 'OBJECT_TABCONSTRAINT'])
/** Kinds whose qualified name is relation + column. */
export const COLUMN_OF = new Set(['OBJECT_COLUMN', 'OBJECT_ATTRIBUTE'])
/** Relation kinds (their names are RangeVars or relation names). */
export const RELATION_KINDS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_INDEX', 'OBJECT_FOREIGN_TABLE',
])

/** OBJECT_* → object type noun (a kind not listed: its enum name, as words). */
export function objectType(kind: unknown): string {
  return OBJECT_KIND_NOUNS[kind as string] ?? String(kind ?? 'object').replace(/^OBJECT_/, '').toLowerCase().replace(/_/g, ' ')
}

export function firstKey(o: Node): string | undefined {
  for (const k in o) return k
  return undefined
}

export function sval(n: unknown): string | undefined {
  if (n === null || typeof n !== 'object') return undefined
  const s = (n as Node).String as Node | undefined
  return s !== undefined && typeof s.sval === 'string' ? s.sval : undefined
}

/** A RangeVar field that may be wrapped ({ RangeVar: {...} }) or not. */
export function relationOf(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return undefined
  const o = v as Node
  return o.RangeVar ?? o
}

export function defElems(list: unknown): Node[] {
  if (!Array.isArray(list)) return []
  const out: Node[] = []
  for (const d of list) {
    const e = (d as Node | null)?.DefElem as Node | undefined
    if (e) out.push(e)
  }
  return out
}

/** Parses a regclass-style text name: unquoted parts fold to lower case, "quoted" parts keep case. */
export function parseQualifiedName(s: string): string[] | null {
  const out: string[] = []
  let i = 0
  const n = s.length
  while (i < n && s[i] === ' ') i++
  for (;;) {
    let part = ''
    if (s[i] === '"') {
      i++
      for (;;) {
        if (i >= n) return null
        if (s[i] === '"') {
          if (s[i + 1] === '"') { part += '"'; i += 2; continue }
          i++
          break
        }
        part += s[i]
        i++
      }
    } else {
      const start = i
      while (i < n && s[i] !== '.' && s[i] !== ' ' && s[i] !== '"') i++
      part = s.slice(start, i).toLowerCase()
      if (part === '') return null
    }
    out.push(part)
    while (i < n && s[i] === ' ') i++
    if (i >= n) return out
    if (s[i] !== '.') return null
    i++
    while (i < n && s[i] === ' ') i++
  }
}
