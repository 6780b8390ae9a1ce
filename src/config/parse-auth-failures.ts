/** `audit.auth_failure_summary` — see audit/auth-failure-summary.ts. */
import type { KeyPath } from './errors.js'
import type { Reader } from './reader.js'
import type { AuthFailureSummaryConfig } from './types.js'

export const AUTH_FAILURE_SUMMARY_DEFAULTS: AuthFailureSummaryConfig = { windowMs: 60_000, keepFirst: 5 }

export function parseAuthFailureSummary(r: Reader, v: unknown, path: KeyPath): AuthFailureSummaryConfig {
  if (v === null || v === undefined) return { ...AUTH_FAILURE_SUMMARY_DEFAULTS }
  const m = r.mapping(v, path, ['window', 'keep_first'])
  return {
    windowMs: r.duration(m.window, [...path, 'window'], AUTH_FAILURE_SUMMARY_DEFAULTS.windowMs, 0, 24 * 3600_000),
    keepFirst: r.int(m.keep_first, [...path, 'keep_first'], AUTH_FAILURE_SUMMARY_DEFAULTS.keepFirst, 0, 1_000_000),
  }
}
