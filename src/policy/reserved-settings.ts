import type { SplitStatement } from '../audit/split.js'

/**
 * Settings the proxy governs: the session id GUC and the application_name tag
 * that carry the governed session into server logs and pg_stat_activity. A
 * client that could change them could make its activity look like another
 * session's, so any attempt to is refused.
 */
export function isReservedSetting(name: string): boolean {
  const n = name.toLowerCase()
  return n === 'application_name' || n.startsWith('pgwitness.')
}

type Node = Record<string, unknown>

/**
 * Why this statement may not run, or null. Covers SET / SET LOCAL / RESET of
 * a reserved setting, set_config() on one anywhere in the statement (or with
 * a setting name that is not a constant, which cannot be checked), and DO
 * blocks whose body mentions one. RESET ALL and DISCARD ALL are allowed:
 * they restore the values the proxy set at connection start.
 */
export function reservedSettingViolation(stmt: SplitStatement): string | null {
  const node = stmt.node
  if (node === null) return null
  const set = node.VariableSetStmt as Node | undefined
  if (set && typeof set.name === 'string' && isReservedSetting(set.name)) {
    return `${set.name} is governed by pgwitness and cannot be changed (${set.kind === 'VAR_RESET' ? 'RESET' : 'SET'})`
  }
  const doStmt = node.DoStmt as Node | undefined
  if (doStmt && /pgwitness\.|application_name/i.test(JSON.stringify(doStmt.args ?? []))) {
    return 'a DO block that mentions a setting governed by pgwitness is not allowed'
  }
  return findSetConfig(node)
}

function findSetConfig(value: unknown): string | null {
  if (Array.isArray(value)) {
    for (const v of value) {
      const r = findSetConfig(v)
      if (r) return r
    }
    return null
  }
  if (value === null || typeof value !== 'object') return null
  const obj = value as Node
  const call = obj.FuncCall as Node | undefined
  if (call && lastName(call.funcname) === 'set_config') {
    const first = (call.args as Node[] | undefined)?.[0]
    const name = constantString(first)
    if (name === null) return 'set_config() with a setting name that is not a constant cannot be checked by pgwitness and is not allowed'
    if (isReservedSetting(name)) return `${name} is governed by pgwitness and cannot be changed (set_config)`
  }
  for (const key in obj) {
    const r = findSetConfig(obj[key])
    if (r) return r
  }
  return null
}

function lastName(funcname: unknown): string | null {
  if (!Array.isArray(funcname) || funcname.length === 0) return null
  const last = funcname[funcname.length - 1] as Node
  const s = (last.String as Node | undefined)?.sval
  return typeof s === 'string' ? s.toLowerCase() : null
}

/** The string value of a constant argument ('x' or 'x'::text), or null. */
function constantString(arg: Node | undefined): string | null {
  if (!arg) return null
  const c = (arg.A_Const as Node | undefined) ?? ((arg.TypeCast as Node | undefined)?.arg as Node | undefined)?.A_Const as Node | undefined
  const s = (c?.sval as Node | undefined)?.sval
  return typeof s === 'string' ? s : null
}
