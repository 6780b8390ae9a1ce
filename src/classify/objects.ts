/**
 * The generic tree walker: relations read and written, function calls (and
 * the sequences nextval & co. name), roles, CTE scoping, objects named by
 * kind, settings. Statement nodes met on the way go back to w.statement.
 */

import {
  COLUMN_OF, ON_RELATION, firstKey, objectType, parseQualifiedName, relationOf, sval, type Node,
} from './names.js'
import { FUNCTION, READ, WRITE, add, addNames, type Scope, type Walk } from './state.js'

function inScope(scope: Scope | null, name: string): boolean {
  for (let s = scope; s !== null; s = s.parent) {
    const names = s.names
    for (let i = 0; i < names.length; i++) if (names[i] === name) return true
  }
  return false
}

/**
 * A RangeVar: `read` marks a relation the statement reads (not its write
 * target); `target` marks a reference that can never be a CTE (DDL names,
 * DML targets).
 */
export function rangeVar(w: Walk, rv: unknown, type: string, read: boolean, target: boolean): void {
  if (rv === null || typeof rv !== 'object') return
  const r = rv as Node
  const name = r.relname
  if (typeof name !== 'string') return
  const schema = typeof r.schemaname === 'string' ? r.schemaname : null
  if (!target && schema === null && inScope(w.scope, name)) return
  if (read && w.exec) w.cls |= READ
  add(w, type, schema, name)
}

export function roleSpec(w: Walk, rs: unknown): void {
  if (rs === null || typeof rs !== 'object') return
  const r = ((rs as Node).RoleSpec ?? rs) as Node
  if (r.roletype === 'ROLESPEC_CSTRING' && typeof r.rolename === 'string') add(w, 'role', null, r.rolename)
  else if (r.roletype === 'ROLESPEC_PUBLIC') add(w, 'role', null, 'public')
}

export function roleSpecs(w: Walk, list: unknown): void {
  if (Array.isArray(list)) for (const r of list) roleSpec(w, r)
}

const SEQUENCE_FUNCS = new Set(['nextval', 'currval', 'setval'])

export function funcCall(w: Walk, f: Node, type = 'function'): void {
  const names = f.funcname
  if (f.funcformat !== 'COERCE_SQL_SYNTAX' && Array.isArray(names)) {
    addNames(w, type, names)
    if (w.exec) w.cls |= FUNCTION
    // nextval('seq'): the literal names a sequence.
    const last = sval(names[names.length - 1])
    if (last !== undefined && SEQUENCE_FUNCS.has(last) && (names.length === 1 || sval(names[0]) === 'pg_catalog')) {
      sequenceArg(w, Array.isArray(f.args) ? f.args[0] : undefined)
    }
  }
  for (const k in f) if (k !== 'funcname') walk(w, f[k])
}

function sequenceArg(w: Walk, arg: unknown): void {
  let a = arg as Node | undefined
  if (a?.TypeCast) a = (a.TypeCast as Node).arg as Node | undefined
  const c = a?.A_Const as Node | undefined
  const s = (c?.sval as Node | undefined)?.sval
  if (typeof s !== 'string') return
  const parts = parseQualifiedName(s)
  if (parts === null || parts.length === 0 || parts.length > 3) return
  add(w, 'sequence', parts.length >= 2 ? parts[parts.length - 2]! : null, parts[parts.length - 1]!)
}

/** Enters a WITH clause: CTE names become visible (all at once if RECURSIVE, else one by one). */
function enterWith(w: Walk, withClause: unknown): void {
  if (withClause === null || typeof withClause !== 'object') return
  const wc = ((withClause as Node).WithClause ?? withClause) as Node
  const ctes = Array.isArray(wc.ctes) ? wc.ctes : []
  const names: string[] = []
  w.scope = { names, parent: w.scope }
  if (wc.recursive === true) {
    for (const c of ctes) {
      const name = ((c as Node).CommonTableExpr as Node | undefined)?.ctename
      if (typeof name === 'string') names.push(name)
    }
    for (const c of ctes) walk(w, ((c as Node).CommonTableExpr as Node | undefined)?.ctequery)
  } else {
    for (const c of ctes) {
      const cte = (c as Node).CommonTableExpr as Node | undefined
      if (cte === undefined) continue
      walk(w, cte.ctequery)
      if (typeof cte.ctename === 'string') names.push(cte.ctename)
    }
  }
}

export function selectStmt(w: Walk, b: Node): void {
  const saved = w.scope
  if (b.withClause) enterWith(w, b.withClause)
  for (const k in b) {
    // lockingClause (FOR UPDATE OF a) names FROM items or aliases, not relations; intoClause is handled by the caller.
    if (k === 'withClause' || k === 'intoClause' || k === 'lockingClause') continue
    walk(w, b[k])
  }
  w.scope = saved
}

export function dml(w: Walk, b: Node): void {
  if (w.exec) w.cls |= WRITE
  const saved = w.scope
  if (b.withClause) enterWith(w, b.withClause)
  rangeVar(w, b.relation, 'relation', false, true)
  for (const k in b) {
    if (k === 'withClause' || k === 'relation') continue
    walk(w, b[k])
  }
  w.scope = saved
}

/** Node types that never contain objects: skipped without walking. */
const LEAF = new Set([
  'A_Const', 'ColumnRef', 'ParamRef', 'String', 'Integer', 'Float', 'Boolean', 'BitString', 'A_Star', 'TypeName',
  'SQLValueFunction', 'ObjectWithArgs', 'LockingClause', 'FunctionParameter', 'SetToDefault',
])

function visit(w: Walk, type: string, b: Node): void {
  if (LEAF.has(type)) return
  switch (type) {
    case 'RangeVar':
      rangeVar(w, b, 'relation', true, false)
      return
    case 'FuncCall':
      funcCall(w, b)
      return
    case 'RoleSpec':
      roleSpec(w, b)
      return
    case 'SelectStmt':
      selectStmt(w, b)
      return
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      dml(w, b)
      return
    case 'TypeCast':
      walk(w, b.arg)
      return
    case 'CommonTableExpr':
      walk(w, b.ctequery)
      return
    default:
      // Statements nested in other statements (CREATE SCHEMA elements, rule actions, BEGIN ATOMIC bodies).
      if (type.endsWith('Stmt')) {
        w.statement(w, type, b)
        return
      }
      for (const k in b) {
        const v = b[k]
        if (v !== null && typeof v === 'object') walk(w, v)
      }
  }
}

export function walk(w: Walk, v: unknown): void {
  if (v === null || typeof v !== 'object') return
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x = v[i]
      if (x !== null && typeof x === 'object') walk(w, x)
    }
    return
  }
  const o = v as Node
  const key = firstKey(o)
  if (key === undefined) return
  const c = key.charCodeAt(0)
  if (c >= 65 && c <= 90) {
    // A wrapped node: { TypeName: {...} }.
    visit(w, key, o[key] as Node)
    return
  }
  // An unwrapped struct (a typed field of its parent): recognise the few that matter by shape.
  if (typeof o.relname === 'string') {
    rangeVar(w, o, 'relation', true, false)
    return
  }
  if (typeof o.roletype === 'string') {
    roleSpec(w, o)
    return
  }
  if (Array.isArray(o.ctes)) return // a WITH clause outside a statement we know: handled by its statement
  if (Array.isArray(o.names) && o.typemod !== undefined) return // an unwrapped TypeName
  for (const k in o) {
    const x = o[k]
    if (x !== null && typeof x === 'object') walk(w, x)
  }
}

/** Walks every field of `b` except those named. */
export function walkFields(w: Walk, b: Node, skip1?: string, skip2?: string, skip3?: string): void {
  for (const k in b) {
    if (k === skip1 || k === skip2 || k === skip3) continue
    const v = b[k]
    if (v !== null && typeof v === 'object') walk(w, v)
  }
}

/** An object named by kind and a name node (List of String, String, ObjectWithArgs, TypeName, RangeVar). */
export function objectRef(w: Walk, kind: unknown, ref: unknown): void {
  if (ref === null || typeof ref !== 'object') return
  const type = objectType(kind)
  const o = ref as Node
  if (o.List) {
    const items = (o.List as Node).items
    if (!Array.isArray(items)) return
    if (ON_RELATION.has(kind as string)) {
      // DROP TRIGGER t ON s.r → [s, r, t]
      addNames(w, 'relation', items, 1)
      const last = sval(items[items.length - 1])
      if (last !== undefined) add(w, type, null, last)
    } else if (COLUMN_OF.has(kind as string)) {
      addNames(w, 'relation', items, 1)
    } else {
      addNames(w, type, items)
    }
    return
  }
  if (o.String) {
    const s = sval(o)
    if (s !== undefined) add(w, type, null, s)
    return
  }
  if (o.ObjectWithArgs) {
    addNames(w, type, (o.ObjectWithArgs as Node).objname)
    return
  }
  if (Array.isArray(o.objname)) {
    addNames(w, type, o.objname)
    return
  }
  if (o.TypeName) {
    addNames(w, type, (o.TypeName as Node).names)
    return
  }
  if (o.RangeVar || typeof o.relname === 'string') {
    rangeVar(w, relationOf(o), type, false, true)
    return
  }
  if (Array.isArray(o.names)) addNames(w, type, o.names)
}

export function objectRefs(w: Walk, kind: unknown, list: unknown): void {
  if (Array.isArray(list)) for (const x of list) objectRef(w, kind, x)
}

/** SET / RESET / SHOW and the `setstmt` of ALTER ROLE|DATABASE|SYSTEM … SET. */
export function setting(w: Walk, v: Node | undefined): void {
  if (!v) return
  const name = v.name
  if (typeof name !== 'string' || v.kind === 'VAR_SET_MULTI' || v.kind === 'VAR_RESET_ALL') return
  add(w, 'setting', null, name)
  if ((name === 'role' || name === 'session_authorization') && v.kind === 'VAR_SET_VALUE' && Array.isArray(v.args)) {
    const c = (v.args[0] as Node | undefined)?.A_Const as Node | undefined
    const role = (c?.sval as Node | undefined)?.sval
    if (typeof role === 'string' && !(name === 'role' && role === 'none')) add(w, 'role', null, role)
  }
}

/** Classifies a query held by a statement (PREPARE, DECLARE CURSOR, CREATE TABLE AS) as a statement of its own. */
export function walkQuery(w: Walk, q: unknown): void {
  if (q === null || typeof q !== 'object') return
  const t = firstKey(q as Node)
  if (t !== undefined) w.statement(w, t, (q as Node)[t] as Node)
}
