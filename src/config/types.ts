/**
 * The validated, fully-resolved configuration. `loadConfig` turns the YAML
 * file into this shape: `${env:NAME}` / `${file:PATH}` references are
 * substituted, relative paths are resolved against the config file's folder,
 * durations are in milliseconds and defaults are filled in. Code outside
 * `src/config` only ever sees this type.
 */

export type UpstreamTlsMode = 'disable' | 'require' | 'verify-full'
export type AuditDurability = 'strict' | 'batched'
export type ParameterMode = 'full' | 'hmac' | 'omit'
export type IdentityMethod = 'jwt' | 'mtls' | 'jwt+mtls'

export interface ListenAddress {
  host: string
  port: number
}

export interface TlsConfig {
  /** PEM contents (not paths) of the server certificate chain and key. */
  cert: string
  key: string
  /** Paths, kept for reload and for messages. */
  certPath: string
  keyPath: string
  /** PEM bundle; set => client certificates are requested and verified. */
  clientCa: string | null
  clientCaPath: string | null
  /** Dev only: accept non-TLS clients whose address is a loopback address. */
  allowPlaintextLoopback: boolean
}

export interface JwtIssuerConfig {
  issuer: string
  /** One or more accepted audiences; a token must name at least one. */
  audience: string[]
  /** Exactly one of jwksFile / jwksUrl is set. */
  jwksFile: string | null
  jwksUrl: string | null
  /** Allowed JWS algorithms. Only asymmetric algorithms are accepted. */
  algorithms: string[]
  /** Claim naming the principal; default `sub`. */
  subjectClaim: string
  /** Claims copied into identity.claims (dotted paths allowed, e.g. "kubernetes.io.namespace"). */
  recordClaims: string[]
  /** Allowed clock skew for exp/nbf, seconds (0..60, default 30). */
  clockSkewSeconds: number
  /** How the key set is fetched; set (by the loader) only with jwksUrl. Missing = defaults. */
  jwksFetch?: JwksFetchConfig
}

/** `jwks_ca`, `jwks_timeout`, `jwks_refresh`, `jwks_min_refresh_interval`, `jwks_key_grace`. */
export interface JwksFetchConfig {
  /** PEM bundle trusted for the JWKS endpoint instead of the system roots; null = system roots. */
  ca: string | null
  caPath: string | null
  /** `jwks_token_file`: bearer token sent with each fetch (Kubernetes in-cluster /openid/v1/jwks); null = none. */
  tokenFile: string | null
  /** Whole-fetch timeout (default 5 s). */
  timeoutMs: number
  /** Background refresh period (default 5 min). */
  refreshMs: number
  /** On-demand refreshes (unknown kid) at most this often (default 10 s). */
  minRefreshIntervalMs: number
  /** Keys the issuer stops publishing stay trusted this long (default 1 h). */
  keyGraceMs: number
}

export interface IdentityConfig {
  jwt: JwtIssuerConfig[]
  mtls: { subject: 'spiffe' | 'cn' }
  /** `identity.approvals`: trusted issuers of approval tokens (src/identity/approval.ts); none by default. */
  approvals: ApprovalIssuerConfig[]
}

/** An approvals issuer: verified as a token issuer is; the subject is always `sub` and no claims are recorded. */
export type ApprovalIssuerConfig = JwtIssuerConfig

export interface UpstreamRoleCredentials {
  /** Password for SCRAM-SHA-256 / md5 / cleartext; null = none (trust, or cert). */
  password: string | null
  /**
   * Client certificate the proxy presents over TLS for this role (PostgreSQL
   * `cert` authentication maps its CN to the role); absent = none. Never
   * combined with a password. PEM contents, plus the paths for messages.
   */
  clientCert?: UpstreamClientCert
}

export interface UpstreamClientCert {
  cert: string
  key: string
  certPath: string
  keyPath: string
}

export interface UpstreamConfig {
  host: string
  port: number
  tls: {
    mode: UpstreamTlsMode
    /** PEM bundle for verify-full. */
    ca: string | null
    /** Host name checked against the server certificate (default: host). */
    servername: string | null
  }
  /** Credentials the proxy uses per upstream role. */
  roles: Record<string, UpstreamRoleCredentials>
  connectTimeoutMs: number
  /** Upstream connection reuse (`upstream.pool`); absent = not configured (off). */
  pool?: UpstreamPoolConfig
}

/**
 * `upstream.pool`: when a governed session ends cleanly, its authenticated
 * upstream connection is reset (DISCARD ALL) and handed to the next session
 * with the same role, database, startup parameters and credentials.
 */
export interface UpstreamPoolConfig {
  /** Off by default. */
  enabled: boolean
  /** Idle connections kept per (role, database, startup parameters, credentials); more are closed. */
  maxIdlePerKey: number
  /** An idle connection unused this long is closed. */
  idleTimeoutMs: number
  /** A connection older than this is closed instead of being reused. */
  maxLifetimeMs: number
}

export interface PolicyMatch {
  method: IdentityMethod | null
  issuer: string | null
  /** Glob: `*` matches any run of characters (including `/`), `?` one character. */
  subject: string | null
  /** Claim equality; on an array claim, "contains". Dotted paths allowed. */
  claims: Record<string, string | number | boolean>
  /** Client certificate SHA-256 fingerprint (lowercase hex), for pinning one certificate. */
  certSha256: string | null
}

export interface PolicyRule {
  name: string
  match: PolicyMatch
  /** Allowed upstream roles; "*" allows any requested role. */
  roles: string[]
  /** Allowed databases; "*" allows any requested database. */
  databases: string[]
  /** The token must be bound to the client certificate (RFC 8705 cnf.x5t#S256). */
  requireTokenBinding: boolean
  /** The rule grants its roles only with a valid approval covering the role and database (`require_approval: true`). */
  requireApproval: boolean
  /** Statement rules for the sessions this rule admits; null: none. */
  statements: StatementRules | null
  /** Replication connections the rule admits (`replication:`); absent or empty: none. */
  replication?: readonly ReplicationMode[]
}

/** `logical`: replication=database (logical decoding of one database); `physical`: replication=true (the cluster's WAL, base backups). */
export type ReplicationMode = 'logical' | 'physical'

/** `enforce`: a matching statement is refused; `monitor`: it runs, and its record says it would have been. */
export type StatementRuleMode = 'enforce' | 'monitor'

/**
 * Which statements an entry applies to. Every key given must match (an
 * empty list is not given); within a key, any value. Globs (`*`, `?`) are
 * matched case-insensitively against `schema.name`, or against the name
 * alone when the statement does not qualify it (search_path decides then).
 */
export interface StatementSelector {
  /** pgaudit classes: READ, WRITE, FUNCTION, ROLE, DDL, MISC, MISC_SET. */
  classes: string[]
  /** Command tags, upper case; `DROP` also matches `DROP TABLE`, etc. */
  commands: string[]
  /** Globs over the objects the statement names (tables, views, schemas, roles…). */
  objects: string[]
  /** Globs over the functions and procedures it calls or names. */
  functions: string[]
}

export interface StatementRuleEntry {
  /** Named in errors and records: the entry's `name`, or e.g. `deny[2]`. */
  name: string
  selector: StatementSelector
  mode: StatementRuleMode
}

export interface ClaimRequirement extends StatementRuleEntry {
  /** The identity must carry this claim (dotted path), non-empty; its value is recorded. */
  claim: string
}

export interface StatementRules {
  deny: StatementRuleEntry[]
  requireClaims: ClaimRequirement[]
  requireApproval: StatementRuleEntry[]
  /**
   * Statements the proxy cannot classify (UNKNOWN: unparseable, not exactly
   * decodable, a fastpath function call): `deny` (default) while any entry
   * could refuse something, so rules cannot be dodged by text the proxy
   * cannot read; `allow` lets them run.
   */
  unknown: 'deny' | 'allow'
  /** The `unknown: deny` refusal's own mode: the block's `mode`. */
  mode: StatementRuleMode
}

export interface SessionLifetimeConfig {
  /** False (default): a session ends when its token expires. True: it may outlive it up to maxDurationMs. */
  outliveToken: boolean
  /** Longest a session may last (ms); null = no limit beyond the token's. */
  maxDurationMs: number | null
}

/**
 * `session.governed_settings`: what happens to a statement that changes
 * application_name or pgwitness.* (src/policy/reserved-settings.ts).
 * `record` (default): it runs, and its record carries
 * `statement.governed_setting_changed: true`. `refuse`: the forms the proxy
 * recognises are refused (42501, a `denied` record); bypassable, see docs/security.md.
 */
export type GovernedSettingsMode = 'record' | 'refuse'

export interface SessionConfig extends SessionLifetimeConfig {
  governedSettings: GovernedSettingsMode
}

/** How a shipped sink renders each record: the v1 line unchanged, or an OCSF 1.x event (src/shipping/ocsf.ts). */
export type AuditSinkFormat = 'v1' | 'ocsf'

/**
 * A sink fed from the local audit log by a shipper (src/shipping/): it
 * follows the log from a persisted cursor and delivers at least once.
 * (`{ type: file }` entries of `audit.sinks` are folded into AuditConfig.log;
 * `{ type: stdout }` is shipped from the file log when there is one, and is
 * otherwise the same as `audit.stdout: true`.)
 */
export interface ShippedSinkBase {
  /** Unique; names the cursor file (`<log dir>/.cursors/<name>.json`) and the metrics label. */
  name: string
  format: AuditSinkFormat
  /** Most records per delivery. */
  batchSize: number
  /** On shutdown, how long the shipper may go on delivering what is in the log. */
  drainTimeoutMs: number
  /** Longest wait between two delivery attempts while the sink fails (exponential backoff cap). */
  maxBackoffMs: number
}

/** PEM bundle to trust instead of the system roots, with its path for messages. */
export interface SinkCa {
  pem: string
  path: string
}

export interface NatsSinkConfig extends ShippedSinkBase {
  type: 'nats'
  /** nats:// or tls:// server URLs (a comma-separated `url` is split). */
  servers: string[]
  subject: string
  /** JetStream stream expected to capture `subject`; null = whichever stream does. */
  stream: string | null
  /** Create `stream` (file storage, capturing `subject`) when it does not exist. */
  createStream: boolean
  /** Duplicate window of a stream created by pgwitness. */
  duplicateWindowMs: number
  user: string | null
  password: string | null
  token: string | null
  ca: SinkCa | null
  /** Connect and PubAck timeout. */
  timeoutMs: number
}

export interface SyslogSinkConfig extends ShippedSinkBase {
  type: 'syslog'
  transport: 'tcp' | 'tls'
  host: string
  port: number
  ca: SinkCa | null
  /** Facility code 0..23 (default 10, authpriv). */
  facility: number
  /** HOSTNAME of each message (default: this machine's host name). */
  hostname: string
  /** Connect and write timeout. */
  timeoutMs: number
}

export type HttpEnvelope = 'none' | 'splunk_hec' | 'elastic_bulk'

export interface HttpSinkConfig extends ShippedSinkBase {
  type: 'http'
  url: string
  /** Extra request headers (values may be secrets: never logged). */
  headers: Record<string, string>
  envelope: HttpEnvelope
  /** elastic_bulk: the index of every document; splunk_hec: the HEC index (null = the token's default). */
  index: string | null
  ca: SinkCa | null
  /** Whole-request timeout. */
  timeoutMs: number
  /** Largest request body; a larger batch is split (a single larger record is sent alone). */
  batchBytes: number
}

/** `{ type: stdout }` in audit.sinks when there is a file log: shipped from it like the others. */
export interface StdoutSinkConfig extends ShippedSinkBase {
  type: 'stdout'
}

export type AuditSinkConfig = NatsSinkConfig | SyslogSinkConfig | HttpSinkConfig | StdoutSinkConfig

export interface AuditConfig {
  /** Path of the local audit log (JSON lines); null = no file log. */
  log: string | null
  /** Also write every record to stdout. */
  stdout: boolean
  durability: AuditDurability
  /** For batched durability: fsync interval. */
  fsyncIntervalMs: number
  parameters: ParameterMode
  /**
   * Text the proxy cannot split into statements exactly as the server will:
   * forward it (recorded per server result, statement.split "server") or
   * refuse it (42601, recorded denied).
   */
  unparseable: 'forward' | 'refuse'
  /** Key for `parameters: hmac` (from config / env / file). */
  parameterHmacKey: string | null
  /** Longest statement text kept in a record (bytes); longer is truncated and marked. */
  maxStatementBytes: number
  /** Longest single parameter value kept in a record (bytes). */
  maxParameterBytes: number
  /** False only for benchmarking the relay without auditing. */
  enabled: boolean
  /** Sinks shipped from the file log (nats, syslog, http); they need `log`. */
  sinks: AuditSinkConfig[]
  /** Signed checkpoints of the chain head; null = none. */
  checkpoint: { key: string; everyRecords: number; everySeconds: number } | null
  /** Rotation of the audit log file by size and/or age; null = never. */
  rotate: { maxBytes: number | null; intervalMs: number | null } | null
  /** Repeated auth failures: the first ones as records, the rest of a window in one summary (audit/auth-failure-summary.ts). */
  authFailureSummary: AuthFailureSummaryConfig
}

export interface AuthFailureSummaryConfig {
  /** How long a key's window stays open after its first failure; 0 = every failure is a record. */
  windowMs: number
  /** Failures of one key written as records in a window before the rest are counted. */
  keepFirst: number
}

export interface LimitsConfig {
  /** A client must finish SSL negotiation + startup + authentication within this. */
  handshakeTimeoutMs: number
  /** Largest frontend message accepted (bytes); larger => 08P01 and disconnect. */
  maxMessageBytes: number
  /** Largest password message (the token) accepted. */
  maxTokenBytes: number
  /**
   * Most authenticated sessions at once; one more is refused with FATAL 53300
   * (server.ts). Connections still in their handshake do not count here: they
   * have budgets of their own (maxHandshakes, maxHandshakesPerSource).
   */
  maxConnections: number
  /** On shutdown, how long statements in flight may run before their sessions are ended. */
  shutdownGraceMs: number
  /** Most connections in their handshake (TLS, startup, authentication) at once; more are closed at accept. */
  maxHandshakes: number
  /** Most connections in their handshake at once from one client address; more are closed at accept. */
  maxHandshakesPerSource: number
}

export interface MetricsConfig {
  listen: ListenAddress | null
}

export interface LogConfig {
  level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'
  format: 'json' | 'pretty'
}

export interface PgwitnessConfig {
  /** Absolute path of the file this came from (null for the built-in dev default). */
  source: string | null
  /** SHA-256 of the config file bytes, recorded in proxy.start. */
  sha256: string
  /** Instance name recorded in every audit record (default: hostname). */
  instance: string
  /** Dev configs allow `pgwitness token`; production ones refuse it. */
  dev: boolean
  listen: ListenAddress
  tls: TlsConfig
  identity: IdentityConfig
  upstream: UpstreamConfig
  policy: PolicyRule[]
  session: SessionConfig
  audit: AuditConfig
  limits: LimitsConfig
  metrics: MetricsConfig
  log: LogConfig
}
