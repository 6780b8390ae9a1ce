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

/** Secret length in BackendKeyData under protocol 3.0, the version the proxy speaks to clients. */
const SECRET_BYTES = 4

/**
 * Maps the BackendKeyData the proxy hands to clients onto live sessions.
 * The process id is the upstream backend's real pid, so that
 * `pg_backend_pid()`, a notification's sender pid and
 * `pg_terminate_backend(pid)` agree with what the client was told, as when
 * connected directly. The secret is minted here, per session: the server's
 * real secret never leaves the proxy, and a pooled connection reused by a
 * later session (same pid) gets a new one, so an earlier session's key does
 * not cancel the next one's statements. A cancel request is honoured only if
 * its (pid, secret) names a live session; the comparison is constant-time.
 */
export class CancelRegistry {
  /**
   * Live sessions by backend pid. Usually one per pid; a list because a
   * reload may point the proxy at another server, whose pids can repeat.
   */
  private readonly entries = new Map<number, Entry[]>()
  private count = 0

  register(backendPid: number, session: Cancellable): { processId: number; secretKey: Buffer } {
    const key = randomBytes(SECRET_BYTES)
    const list = this.entries.get(backendPid)
    if (list) list.push({ key, session })
    else this.entries.set(backendPid, [{ key, session }])
    this.count++
    return { processId: backendPid, secretKey: key }
  }

  /** The session has ended: its key cancels nothing from now on (another session's on the same pid stays). */
  unregister(backendPid: number, session: Cancellable): void {
    const list = this.entries.get(backendPid)
    const i = list ? list.findIndex((e) => e.session === session) : -1
    if (i < 0) return
    list!.splice(i, 1)
    this.count--
    if (list!.length === 0) this.entries.delete(backendPid)
  }

  /** The session a cancel request addresses, or null for an unknown pid or a wrong secret. */
  lookup(processId: number, secretKey: Buffer): Cancellable | null {
    if (secretKey.length !== SECRET_BYTES) return null
    let found: Cancellable | null = null
    for (const e of this.entries.get(processId) ?? []) {
      if (timingSafeEqual(e.key, secretKey)) found ??= e.session
    }
    return found
  }

  get size(): number {
    return this.count
  }
}
