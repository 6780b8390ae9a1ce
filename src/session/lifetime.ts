/**
 * When a governed session must end on its own. By default a session ends
 * when its token expires (the token was the authorization; continuing past
 * it would outlive the grant). Config may let it outlive the token, up to
 * session.max_duration.
 */
import type { SessionEndReason } from '../evidence/types.js'
import type { SessionLifetimeConfig } from '../config/types.js'

export interface SessionDeadline {
  /** Epoch ms. */
  at: number
  reason: SessionEndReason
  /** What the client is told (FATAL 28000). */
  message: string
}

/** The deadline of a session admitted now with a token expiring at `tokenExpiresAt` (epoch s, null: none). */
export function sessionDeadline(lifetime: SessionLifetimeConfig, tokenExpiresAt: number | null, now = Date.now()): SessionDeadline | null {
  let deadline: SessionDeadline | null = null
  if (!lifetime.outliveToken && tokenExpiresAt !== null) {
    deadline = { at: tokenExpiresAt * 1000, reason: 'token_expired', message: 'the session ended because its token expired; reconnect with a fresh token' }
  }
  if (lifetime.maxDurationMs !== null && (deadline === null || now + lifetime.maxDurationMs < deadline.at)) {
    deadline = {
      at: now + lifetime.maxDurationMs,
      reason: 'policy_terminated',
      message: 'the session reached its maximum duration (session.max_duration); reconnect to continue',
    }
  }
  return deadline
}

/**
 * The earlier of a session's deadline and its approval's expiry (epoch s,
 * null: no approval). An approval is time-boxed elevation: the session it
 * admitted ends with it, whatever session.outlive_token says.
 */
export function withApprovalDeadline(deadline: SessionDeadline | null, approvalExpiresAt: number | null): SessionDeadline | null {
  if (approvalExpiresAt === null || (deadline !== null && deadline.at <= approvalExpiresAt * 1000)) return deadline
  return { at: approvalExpiresAt * 1000, reason: 'approval_expired', message: 'the session ended because its approval expired; reconnect with a new approval' }
}

/** Call `end` at the deadline (setTimeout holds at most ~24.8 days: longer waits re-arm). Returns a cancel function. */
export function armDeadline(at: number, end: () => void): () => void {
  let timer: NodeJS.Timeout
  const arm = (): void => {
    const wait = at - Date.now()
    timer = setTimeout(wait > 0x7fffffff ? arm : end, Math.max(0, Math.min(wait, 0x7fffffff)))
    timer.unref()
  }
  arm()
  return () => clearTimeout(timer)
}
