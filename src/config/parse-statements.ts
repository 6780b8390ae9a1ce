/** `policy[].statements` — statement rules: deny, require_claims, require_approval, and their modes. */
import { fail, type KeyPath } from './errors.js'
import { given, type Reader } from './reader.js'
import type { ClaimRequirement, StatementRuleEntry, StatementRuleMode, StatementRules, StatementSelector } from './types.js'
import { AUDIT_CLASSES } from '../classify/state.js'

const BLOCK_KEYS = ['mode', 'unknown', 'deny', 'require_claims', 'require_approval']
const SELECTOR_KEYS = ['class', 'command', 'object', 'function']
const ENTRY_KEYS = ['name', 'mode', ...SELECTOR_KEYS]
const MODES = ['enforce', 'monitor'] as const

export function parseStatementRules(r: Reader, v: unknown, path: KeyPath): StatementRules | null {
  if (v === null || v === undefined) return null
  const m = r.mapping(v, path, BLOCK_KEYS)
  const mode: StatementRuleMode = r.oneOf(m.mode, [...path, 'mode'], MODES, 'enforce')
  const unknown = r.oneOf(m.unknown, [...path, 'unknown'], ['deny', 'allow'] as const, 'deny')
  const entries = <T extends StatementRuleEntry>(key: string, extra: readonly string[], build: (e: StatementRuleEntry, m: Record<string, unknown>, p: KeyPath) => T): T[] => {
    if (!given(m, key)) return []
    return r.list(m[key], [...path, key]).map((item, i) => {
      const p = [...path, key, i]
      const em = r.mapping(item, p, [...ENTRY_KEYS, ...extra])
      const entry: StatementRuleEntry = {
        name: given(em, 'name') ? r.string(em.name, [...p, 'name']) : `${key}[${i}]`,
        selector: parseSelector(r, em, p),
        mode: r.oneOf(em.mode, [...p, 'mode'], MODES, mode),
      }
      return build(entry, em, p)
    })
  }
  const deny = entries('deny', [], (e) => e)
  const requireClaims = entries('require_claims', ['claim'], (e, em, p): ClaimRequirement => {
    if (!given(em, 'claim')) fail([...p, 'claim'], 'is required (the claim the identity must carry, e.g. change_ticket)')
    return { ...e, claim: r.string(em.claim, [...p, 'claim']) }
  })
  const requireApproval = entries('require_approval', [], (e) => e)
  return { deny, requireClaims, requireApproval, unknown, mode }
}

function parseSelector(r: Reader, m: Record<string, unknown>, path: KeyPath): StatementSelector {
  const list = (key: string): string[] => {
    if (!given(m, key)) return []
    const v = m[key]
    return typeof v === 'string' ? [r.string(v, [...path, key])] : r.stringList(v, [...path, key], true)
  }
  const classes = list('class').map((c) => c.toUpperCase())
  for (const c of classes) {
    if (!(AUDIT_CLASSES as readonly string[]).includes(c)) fail([...path, 'class'], `unknown class ${JSON.stringify(c)} (one of ${AUDIT_CLASSES.join(', ')})`)
  }
  const selector = {
    classes,
    commands: list('command').map((c) => c.toUpperCase().replace(/\s+/g, ' ').trim()),
    objects: list('object'),
    functions: list('function'),
  }
  if (!SELECTOR_KEYS.some((k) => given(m, k))) {
    fail(path, `needs at least one of ${SELECTOR_KEYS.join(', ')} (which statements it applies to)`)
  }
  return selector
}
