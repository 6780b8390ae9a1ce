/**
 * Errors that reach a PostgreSQL client. Every error the proxy sends to a
 * client is a PgError so that it carries a SQLSTATE and a severity, exactly
 * like a server-generated ErrorResponse.
 */
export type Severity = 'ERROR' | 'FATAL' | 'PANIC'

export interface PgErrorFields {
  severity?: Severity
  /** Five-character SQLSTATE, e.g. 28P01. */
  code: string
  message: string
  detail?: string
  hint?: string
}

export class PgError extends Error {
  readonly severity: Severity
  readonly code: string
  readonly detail: string | undefined
  readonly hint: string | undefined

  constructor(fields: PgErrorFields) {
    super(fields.message)
    this.name = 'PgError'
    this.severity = fields.severity ?? 'FATAL'
    this.code = fields.code
    this.detail = fields.detail
    this.hint = fields.hint
  }
}

/**
 * A malformed or out-of-order frontend message: SQLSTATE 08P01, or the code
 * PostgreSQL uses for the case (0A000 for an unsupported protocol version,
 * 28000 for a StartupMessage without a user).
 */
export class ProtocolViolation extends PgError {
  constructor(message: string, detail?: string, code: string = SQLSTATE.protocolViolation) {
    super({ severity: 'FATAL', code, message, ...(detail ? { detail } : {}) })
    this.name = 'ProtocolViolation'
  }
}

/**
 * A malformed start of a connection that PostgreSQL only logs (ereport
 * COMMERROR) and answers by closing without a word: a startup packet whose
 * length word is impossible (garbage, an HTTP request, a Terminate sent
 * before any StartupMessage) or a malformed CancelRequest. The proxy closes
 * silently too: some clients (node-postgres) crash on an ErrorResponse there.
 */
export class SilentProtocolViolation extends ProtocolViolation {
  constructor(message: string, detail?: string) {
    super(message, detail)
    this.name = 'SilentProtocolViolation'
  }
}

/** SQLSTATE codes the proxy itself emits. */
export const SQLSTATE = {
  protocolViolation: '08P01',
  syntaxError: '42601',
  connectionFailure: '08006',
  connectionRejected: '08004',
  invalidPassword: '28P01',
  invalidAuthorization: '28000',
  insufficientPrivilege: '42501',
  adminShutdown: '57P01',
  cannotConnectNow: '57P03',
  queryCanceled: '57014',
  featureNotSupported: '0A000',
  internalError: 'XX000',
  ioError: '58030',
  configFileError: 'F0000',
  tooManyConnections: '53300',
  programLimitExceeded: '54000',
} as const
