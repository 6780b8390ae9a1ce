import type tls from 'node:tls'
import type { Logger } from 'pino'
import type { AuditSink } from '../audit/log.js'
import type { IntentJournal } from '../audit/intent-journal.js'
import type { ProxyInfo } from '../audit/types.js'
import type { PgwitnessConfig } from '../config/types.js'
import type { TokenVerifier } from '../identity/jwt.js'
import type { ProxyMetrics } from '../metrics/registry.js'
import type { CancelRegistry } from './cancel-registry.js'

/** What every session shares with the proxy that runs it. */
export interface ProxyContext {
  readonly config: PgwitnessConfig
  readonly proxy: ProxyInfo
  readonly verifier: TokenVerifier
  readonly audit: AuditSink
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
