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

/** A malformed or out-of-order frontend message (SQLSTATE 08P01). */
export class ProtocolViolation extends PgError {
  constructor(message: string, detail?: string) {
    super({ severity: 'FATAL', code: SQLSTATE.protocolViolation, message, ...(detail ? { detail } : {}) })
    this.name = 'ProtocolViolation'
  }
}

/** SQLSTATE codes the proxy itself emits. */
export const SQLSTATE = {
  protocolViolation: '08P01',
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
