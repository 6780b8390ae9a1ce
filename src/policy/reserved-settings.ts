import type { SplitStatement } from '../classify/split.js'

/**
 * Settings the proxy governs: the session id GUC and the application_name tag
 * that carry the governed session into server logs and pg_stat_activity. A
 * client that changes them can make its activity look like another
 * session's. By default (`session.governed_settings: record`) such statements
 * run and their records are flagged (governedSettingChanges); with `refuse`
 * the ones reservedSettingViolation recognises are refused instead. Neither
 * can see a change made out of sight (in a function, by dynamic SQL), which is
 * why server logs are joined on %c and the backend pid (docs/correlation.md).
 */
export function isReservedSetting(name: string): boolean {
  const n = name.toLowerCase()
  return n === 'application_name' || n.startsWith('pgwitness.')
}

type Node = Record<string, unknown>

/** One way a statement changes (or may change) a governed setting. */
export interface GovernedSettingChange {
  via: 'set' | 'reset' | 'reset_all' | 'discard_all' | 'set_config' | 'pg_settings' | 'do'
  /** The governed setting it names, or null when the statement does not say which (RESET ALL, pg_settings, a computed name, DO). */
  setting: string | null
}

/**
 * How a parsed statement changes governed settings (empty: it does not).
 * What the statement itself says, read from its parse tree, so spelling
 * tricks (case, quoting, U&"" escapes, pg_catalog qualification) do not hide it:
 * - SET / SET LOCAL / RESET of application_name or pgwitness.*;
 * - RESET ALL and DISCARD ALL (they put back the connection's startup values,
 *   which on a pooled connection are the pool's neutral ones, not this session's);
 * - set_config() anywhere in the statement naming one, or with a name that is
 *   not a constant (it cannot be told which);
 * - an UPDATE of pg_settings (the view's rule calls set_config);
 * - a DO block whose body mentions one, set_config or pg_settings.
 * What runs out of sight (a function or procedure calling set_config, dynamic
 * SQL built from pieces, a view over pg_settings) is not seen: the flag is a
 * lead for an investigator, not a guarantee (docs/security.md).
 */
export function governedSettingChanges(node: Node | null): GovernedSettingChange[] {
  if (node === null) return []
  const set = node.VariableSetStmt as Node | undefined
  if (set) {
    if (set.kind === 'VAR_RESET_ALL') return [{ via: 'reset_all', setting: null }]
    if (typeof set.name === 'string' && isReservedSetting(set.name)) {
      return [{ via: set.kind === 'VAR_RESET' ? 'reset' : 'set', setting: set.name.toLowerCase() }]
    }
    return []
  }
  if ((node.DiscardStmt as Node | undefined)?.target === 'DISCARD_ALL') return [{ via: 'discard_all', setting: null }]
  const doStmt = node.DoStmt as Node | undefined
  if (doStmt) {
    return /pgwitness\.|application_name|set_config|pg_settings/i.test(JSON.stringify(doStmt.args ?? [])) ? [{ via: 'do', setting: null }] : []
  }
  const found: GovernedSettingChange[] = []
  collectChanges(node, found)
  return found
}

/** set_config() calls and UPDATEs of pg_settings anywhere in a tree (CTEs, subqueries, PREPARE bodies, …). */
function collectChanges(value: unknown, found: GovernedSettingChange[]): void {
  if (Array.isArray(value)) {
    for (const v of value) collectChanges(v, found)
    return
  }
  if (value === null || typeof value !== 'object') return
  const obj = value as Node
  const call = obj.FuncCall as Node | undefined
  if (call && lastName(call.funcname) === 'set_config') {
    const name = constantString((call.args as Node[] | undefined)?.[0])
    if (name === null) found.push({ via: 'set_config', setting: null })
    else if (isReservedSetting(name)) found.push({ via: 'set_config', setting: name.toLowerCase() })
  }
  const update = obj.UpdateStmt as Node | undefined
  if (update && isPgSettings(update.relation as Node | undefined)) found.push({ via: 'pg_settings', setting: null })
  for (const key in obj) collectChanges(obj[key], found)
}

/** pg_settings or pg_catalog.pg_settings (pg_catalog comes first on any search_path that does not name it). */
function isPgSettings(rel: Node | undefined): boolean {
  return rel?.relname === 'pg_settings' && (rel.schemaname === undefined || rel.schemaname === 'pg_catalog')
}

/**
 * With `session.governed_settings: refuse`: why this statement may not run,
 * or null. Covers SET / SET LOCAL / RESET of
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
