import { randomBytes, timingSafeEqual } from 'node:crypto'

/** What a live session offers to the cancel path. */
export interface Cancellable {
  /** Forward a cancel of the session's running statement to the upstream server. */
  cancelUpstream(): Promise<void>
}

interface Entry {
  key: Buffer
  session: Cancellable
}

/**
 * Maps the BackendKeyData the proxy hands to clients onto live sessions.
 * Clients never see the server's real PID and secret: a cancel request is
 * honoured only if it names a key we issued, and then forwarded upstream with
 * the real one. Keys are random; comparison is constant-time.
 */
export class CancelRegistry {
  private readonly entries = new Map<number, Entry>()

  register(session: Cancellable): { processId: number; secretKey: Buffer } {
    let processId: number
    do {
      // Positive 31-bit, like a PID, so no driver mis-parses it.
      processId = randomBytes(4).readUInt32BE(0) & 0x7fffffff
    } while (processId === 0 || this.entries.has(processId))
    const key = randomBytes(4)
    this.entries.set(processId, { key, session })
    return { processId, secretKey: key }
  }

  unregister(processId: number): void {
    this.entries.delete(processId)
  }

  /** The session a cancel request addresses, or null for an unknown or wrong key. */
  lookup(processId: number, secretKey: Buffer): Cancellable | null {
    const e = this.entries.get(processId)
    if (!e || e.key.length !== secretKey.length || !timingSafeEqual(e.key, secretKey)) return null
    return e.session
  }

  get size(): number {
    return this.entries.size
  }
}
