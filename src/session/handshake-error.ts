import type { AuthFailureReason } from '../evidence/types.js'
import { PgError, SQLSTATE } from '../protocol/errors.js'

/** A refusal during the handshake: what the client is told (FATAL) and the audit reason code. */
export class HandshakeError extends PgError {
  constructor(readonly reason: AuthFailureReason, fields: { code: string; message: string; hint?: string }) {
    super({ severity: 'FATAL', ...fields })
    this.name = 'HandshakeError'
  }
}

/** limits.max_connections is reached: refused as a full PostgreSQL refuses (FATAL 53300), recorded as rate_limited. */
export function tooManyClients(maxConnections: number): HandshakeError {
  return new HandshakeError('rate_limited', {
    code: SQLSTATE.tooManyConnections,
    message: 'sorry, too many clients already',
    hint: `pgwitness admits ${maxConnections} sessions at once (limits.max_connections)`,
  })
}
