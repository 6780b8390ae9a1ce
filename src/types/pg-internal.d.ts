// node-postgres' SCRAM and MD5 client code, reused instead of re-implementing
// the crypto (pg has no typings for these internal modules).
declare module 'pg/lib/crypto/sasl' {
  interface SaslSession {
    mechanism: string
    clientNonce: string
    response: string
    message: string
  }
  export function startSession(mechanisms: string[], stream?: unknown): SaslSession
  export function continueSession(session: SaslSession, password: string, serverData: string, stream?: unknown): Promise<void>
  export function finalizeSession(session: SaslSession, serverData: string): void
  const _default: { startSession: typeof startSession; continueSession: typeof continueSession; finalizeSession: typeof finalizeSession }
  export default _default
}
declare module 'pg/lib/crypto/utils' {
  export function postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>
  const _default: { postgresMd5PasswordHash: typeof postgresMd5PasswordHash }
  export default _default
}
declare module 'pg-protocol/dist/parser' {
  import type { BackendMessage } from 'pg-protocol/dist/messages'
  export class Parser {
    parse(buffer: Buffer, callback: (msg: BackendMessage) => void): void
  }
}
