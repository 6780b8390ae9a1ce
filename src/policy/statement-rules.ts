/**
 * Statement rules (`policy[].statements`): which statements a session may
 * run. Pure: a statement's classification in, a verdict out.
 *
 * An entry applies when every selector key it gives matches (see
 * StatementSelector). `deny` refuses what it applies to; `require_claims`
 * refuses it unless the identity carries the claim (its value is recorded);
 * `require_approval` refuses it unless the session's approval covers it. In
 * `monitor` mode a refusal is only recorded (`would_deny`) and the statement
 * runs. A statement the proxy cannot classify is refused while the rules could
 * refuse anything (`unknown: deny`, the default): fail closed.
 */
import type { StatementPolicyInfo, StatementRuleHit } from '../evidence/types.js'
import type { StatementRules, StatementSelector } from '../config/types.js'
import { getClaim } from '../identity/claims.js'
import { globToRegExp } from './glob.js'

/** What the rules need to know of a statement. */
export interface StatementFacts {
  command: string
  classes: readonly string[]
  objects: ReadonlyArray<{ type: string; schema: string | null; name: string }>
  /** The proxy could not classify it (unparseable, not exactly decodable, a fastpath call). */
  unknown: boolean
}

/** The approval a session holds, as far as statement rules look at it. */
export interface ApprovalScope {
  /** Classes the approval covers; null: it does not restrict classes. */
  classes: readonly string[] | null
}

export interface StatementVerdict {
  /** The first refusal in enforce mode: the statement must not run. */
  deny: StatementRuleHit | null
  /** For the record: refusals, would-be refusals and required claim values. */
  policy: StatementPolicyInfo
}

const FUNCTION_TYPES = new Set(['function', 'procedure', 'aggregate'])

export class SessionStatementRules {
  private readonly guarded: boolean

  constructor(
    /** The policy rule that admitted the session. */
    private readonly rule: string,
    private readonly rules: StatementRules,
    private readonly claims: Record<string, unknown>,
    private readonly approval: ApprovalScope | null,
    /** The upstream role (the `$user` schema of the default search_path). */
    private readonly role: string,
  ) {
    this.guarded = rules.deny.length + rules.requireClaims.length + rules.requireApproval.length > 0
  }

  /** A statement the proxy cannot read or classify is refused (enforce mode, `unknown: deny`). */
  get refusesUnknown(): boolean {
    return this.guarded && this.rules.unknown === 'deny' && this.rules.mode === 'enforce'
  }

  /** The verdict on one statement; null when no rule has anything to say about it. */
  evaluate(st: StatementFacts): StatementVerdict | null {
    if (!this.guarded) return null
    const hits: Array<StatementRuleHit & { enforce: boolean }> = []
    let claims: Record<string, unknown> | null = null
    const hit = (e: { name: string; mode: string }, matched: string): void => {
      hits.push({ rule: this.rule, statement_rule: e.name, matched, enforce: e.mode === 'enforce' })
    }
    if (st.unknown) {
      if (this.rules.unknown === 'deny') hit({ name: 'unknown', mode: this.rules.mode }, 'a statement the proxy cannot classify')
    } else {
      for (const e of this.rules.deny) {
        const m = matchSelector(e.selector, st, this.role)
        if (m !== null) hit(e, m)
      }
      for (const e of this.rules.requireClaims) {
        const m = matchSelector(e.selector, st, this.role)
        if (m === null) continue
        const value = getClaim(this.claims, e.claim)
        if (value === undefined || value === null || value === '') hit(e, `${m}, without claim ${e.claim}`)
        else (claims ??= {})[e.claim] = value
      }
      for (const e of this.rules.requireApproval) {
        const m = matchSelector(e.selector, st, this.role)
        if (m !== null && !this.approvalCovers(st)) hit(e, `${m}, without an approval covering it`)
      }
    }
    if (hits.length === 0 && claims === null) return null
    const enforced = hits.find((h) => h.enforce)
    const policy: StatementPolicyInfo = {}
    if (enforced) policy.denied_by = plain(enforced)
    const monitored = hits.filter((h) => !h.enforce).map(plain)
    if (monitored.length > 0) policy.would_deny = monitored
    if (claims !== null) policy.claims = claims
    return { deny: enforced ? plain(enforced) : null, policy }
  }

  private approvalCovers(st: StatementFacts): boolean {
    const a = this.approval
    if (a === null) return false
    return a.classes === null || st.classes.every((c) => a.classes!.includes(c))
  }
}

/** What the error message says of a refusal. */
export function describeHit(h: StatementRuleHit): string {
  return `statement denied by policy rule ${JSON.stringify(h.rule)} (${h.statement_rule}: ${h.matched})`
}

function plain(h: StatementRuleHit & { enforce?: boolean }): StatementRuleHit {
  return { rule: h.rule, statement_rule: h.statement_rule, matched: h.matched }
}

/** What made the selector match (for the message and the record), or null. */
export function matchSelector(sel: StatementSelector, st: StatementFacts, role = ''): string | null {
  const found: string[] = []
  if (sel.classes.length > 0) {
    const c = st.classes.find((x) => sel.classes.includes(x))
    if (c === undefined) return null
    found.push(`class ${c}`)
  }
  if (sel.commands.length > 0) {
    const tag = st.command.toUpperCase()
    if (!sel.commands.some((c) => tag === c || tag.startsWith(`${c} `))) return null
    found.push(`command ${st.command}`)
  }
  if (sel.objects.length > 0) {
    const o = st.objects.find((x) => !FUNCTION_TYPES.has(x.type) && sel.objects.some((g) => nameMatches(g, x, role)))
    if (o === undefined) return null
    found.push(`object ${qualified(o)}`)
  }
  if (sel.functions.length > 0) {
    const f = st.objects.find((x) => FUNCTION_TYPES.has(x.type) && sel.functions.some((g) => nameMatches(g, x, role)))
    if (f === undefined) return null
    found.push(`function ${qualified(f)}`)
  }
  return found.join(', ')
}

/**
 * A glob over `schema.name` (case-insensitive). A pattern without a dot
 * matches the name in any schema. A name the statement does not qualify is
 * resolved by search_path on the server, which the proxy does not see: it is
 * matched on its name alone (any schema: failing closed), unless the
 * pattern's name part is only wildcards (`pii.*`), which would then catch
 * every unqualified name; such a pattern is matched against the name in the
 * default search_path's schemas (`public`, and the role's own).
 */
function nameMatches(glob: string, o: { schema: string | null; name: string }, role: string): boolean {
  const g = glob.toLowerCase()
  const name = o.name.toLowerCase()
  const dot = g.lastIndexOf('.')
  if (dot < 0) return globToRegExp(g).test(name)
  if (o.schema !== null) return globToRegExp(g).test(`${o.schema.toLowerCase()}.${name}`)
  const namePart = g.slice(dot + 1)
  if (!/^[*?]*$/.test(namePart)) return globToRegExp(namePart).test(name)
  return globToRegExp(g).test(`public.${name}`) || globToRegExp(g).test(`${role.toLowerCase()}.${name}`)
}

function qualified(o: { schema: string | null; name: string }): string {
  return o.schema === null ? o.name : `${o.schema}.${o.name}`
}

