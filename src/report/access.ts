/**
 * Access review matrix: identity × (role, database) — sessions, statements by
 * class, last use and the policy rule that admitted it; with the proxy's
 * config, the grants its policy allows that nobody used in the period
 * (candidates for removal).
 */
import type { PolicyRule } from '../config/types.js'
import { bump, identityKey, iso, topEntries, type SeenRecord, type Section } from './record-facts.js'

const CELLS_CAP = 100_000
const RULES_PER_CELL = 20

interface Cell {
  identity: string
  role: string
  database: string
  sessions: number
  statements: number
  denied: number
  classes: Map<string, number>
  first: number
  last: number
  rules: Map<string, number>
  intact: boolean
}

export interface AccessJson {
  identity: string
  role: string
  database: string
  sessions: number
  statements: number
  denied: number
  classes: Record<string, number>
  first_use: string | null
  last_use: string | null
  policy_rules: string[]
  intact: boolean
}

export interface UnusedGrantJson {
  rule: string
  /** What the rule matches (who it grants to). */
  match: string
  role: string
  database: string
  reason: string
}

export class AccessMatrix implements Section {
  private readonly cells = new Map<string, Cell>()
  /** rule → "role\u0000database" pairs used under it (and "*" when any was). */
  private readonly usedByRule = new Map<string, Set<string>>()
  cellsDropped = 0

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type !== 'session.start' && rec.type !== 'statement') return
    const identity = identityKey(rec.identity)!
    const { role, database } = rec.upstream
    const key = `${identity}\u0000${role}\u0000${database}`
    let c = this.cells.get(key)
    if (c === undefined) {
      if (this.cells.size >= CELLS_CAP) {
        this.cellsDropped++
        return
      }
      c = { identity, role, database, sessions: 0, statements: 0, denied: 0, classes: new Map(), first: r.ms, last: r.ms, rules: new Map(), intact: true }
      this.cells.set(key, c)
    }
    c.first = Math.min(c.first, r.ms)
    c.last = Math.max(c.last, r.ms)
    if (!r.intact) c.intact = false
    const rule = rec.identity.policy_rule
    if (rec.type === 'session.start') {
      c.sessions++
      if (rule !== null) {
        bump(c.rules, rule, RULES_PER_CELL)
        let used = this.usedByRule.get(rule)
        if (used === undefined) this.usedByRule.set(rule, (used = new Set()))
        if (used.size < CELLS_CAP) used.add(`${role}\u0000${database}`)
      }
      return
    }
    c.statements++
    if (rec.outcome.status === 'denied') c.denied++
    for (const cls of rec.statement.classes) bump(c.classes, cls, 20)
  }

  toJSON(): AccessJson[] {
    return [...this.cells.values()]
      .sort((a, b) => a.identity.localeCompare(b.identity) || a.role.localeCompare(b.role) || a.database.localeCompare(b.database))
      .map((c) => ({
        identity: c.identity,
        role: c.role,
        database: c.database,
        sessions: c.sessions,
        statements: c.statements,
        denied: c.denied,
        classes: Object.fromEntries(topEntries(c.classes).map((e) => [e.key, e.count])),
        first_use: iso(c.first),
        last_use: iso(c.last),
        policy_rules: topEntries(c.rules).map((e) => e.key),
        intact: c.intact,
      }))
  }

  /**
   * Grants in `policy` not used in the period: a rule that admitted no
   * session at all, or a listed role × database no session of that rule
   * used. A `*` cannot be enumerated: it counts as used when the rule was.
   */
  unusedGrants(policy: readonly PolicyRule[]): UnusedGrantJson[] {
    const out: UnusedGrantJson[] = []
    for (const rule of policy) {
      const used = this.usedByRule.get(rule.name)
      const match = describeMatch(rule)
      if (used === undefined) {
        out.push({ rule: rule.name, match, role: rule.roles.join(', '), database: rule.databases.join(', '), reason: 'the rule admitted no session in the period' })
        continue
      }
      for (const role of rule.roles) {
        for (const database of rule.databases) {
          if (role === '*' || database === '*') {
            const any = [...used].some((u) => {
              const [ur, ud] = u.split('\u0000')
              return (role === '*' || ur === role) && (database === '*' || ud === database)
            })
            if (!any) out.push({ rule: rule.name, match, role, database, reason: 'no session of this rule used it' })
          } else if (!used.has(`${role}\u0000${database}`)) {
            out.push({ rule: rule.name, match, role, database, reason: 'no session of this rule used it' })
          }
        }
      }
    }
    return out
  }
}

function describeMatch(rule: PolicyRule): string {
  const m = rule.match
  const parts: string[] = []
  if (m.method !== null) parts.push(`method ${m.method}`)
  if (m.issuer !== null) parts.push(`issuer ${m.issuer}`)
  if (m.subject !== null) parts.push(`subject ${m.subject}`)
  for (const [k, v] of Object.entries(m.claims)) parts.push(`claim ${k}=${String(v)}`)
  if (m.certSha256 !== null) parts.push(`certificate ${m.certSha256.slice(0, 16)}…`)
  return parts.length === 0 ? 'anyone authenticated' : parts.join(', ')
}
