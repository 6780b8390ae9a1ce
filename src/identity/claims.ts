/**
 * Look up a claim by a dotted path. Claim names may themselves contain dots
 * (Kubernetes puts its claims under "kubernetes.io"), so at each level the
 * longest key that matches a prefix of the remaining path wins:
 * "kubernetes.io.namespace" finds payload["kubernetes.io"]["namespace"].
 */
export function getClaim(obj: unknown, path: string): unknown {
  if (obj === null || typeof obj !== 'object') return undefined
  const rec = obj as Record<string, unknown>
  if (Object.prototype.hasOwnProperty.call(rec, path)) return rec[path]
  const parts = path.split('.')
  for (let i = parts.length - 1; i >= 1; i--) {
    const head = parts.slice(0, i).join('.')
    if (Object.prototype.hasOwnProperty.call(rec, head)) {
      const found = getClaim(rec[head], parts.slice(i).join('.'))
      if (found !== undefined) return found
    }
  }
  return undefined
}

/** Select the configured claims for recording, keyed by the configured path. */
export function selectClaims(payload: Record<string, unknown>, paths: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const p of paths) {
    const v = getClaim(payload, p)
    if (v !== undefined) out[p] = v
  }
  return out
}

/** Claim equality; an array claim matches when it contains the value. */
export function claimMatches(actual: unknown, expected: string | number | boolean): boolean {
  if (Array.isArray(actual)) return actual.some((v) => v === expected)
  return actual === expected
}
