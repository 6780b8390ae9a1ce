import type tls from 'node:tls'
import type { Logger } from 'pino'
import type { AuditSink } from '../ledger/log.js'
import type { AuthFailureSummarizer } from '../evidence/auth-failure-summary.js'
import type { IntentJournal } from '../ledger/intent-journal.js'
import type { ProxyInfo } from '../evidence/types.js'
import type { PgwitnessConfig } from '../config/types.js'
import type { TokenVerifier } from '../identity/jwt.js'
import type { ApprovalVerifier } from '../identity/approval.js'
import type { ProxyMetrics } from '../metrics/registry.js'
import type { CancelRegistry } from './cancel-registry.js'

/** What every session shares with the proxy that runs it. */
export interface ProxyContext {
  readonly config: PgwitnessConfig
  readonly proxy: ProxyInfo
  readonly verifier: TokenVerifier
  /** identity.approvals (replaced on reload with the token verifier). */
  readonly approvals: ApprovalVerifier
  readonly audit: AuditSink
  /** Where auth.failure records go: written, or counted into a summary when they repeat. */
  readonly authFailures: AuthFailureSummarizer
  /** Strict durability: where statements are recorded before they are forwarded; null otherwise. */
  readonly intents: IntentJournal | null
  /** Why the audit log cannot be written right now (statements are refused meanwhile), or null. */
  auditUnavailable(): string | null
  readonly log: Logger
  readonly cancels: CancelRegistry
  readonly metrics: ProxyMetrics
  /** The current server TLS context (replaced on reload). */
  secureContext(): tls.SecureContext
}
