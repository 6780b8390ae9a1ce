import type { AuthFailureReason } from '../audit/types.js'
import { PgError } from '../protocol/errors.js'

/** A refusal during the handshake: what the client is told (FATAL) and the audit reason code. */
export class HandshakeError extends PgError {
  constructor(readonly reason: AuthFailureReason, fields: { code: string; message: string; hint?: string }) {
    super({ severity: 'FATAL', ...fields })
    this.name = 'HandshakeError'
  }
}
