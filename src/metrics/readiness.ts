import net from 'node:net'

/** One readiness condition: resolves to null when it holds, else to why it does not. */
export interface ReadinessCheck {
  readonly name: string
  check(): Promise<string | null> | string | null
}

export interface ReadinessReport {
  ready: boolean
  /** Names of the checks that failed, in check order. */
  failed: string[]
  checks: Record<string, { ok: true } | { ok: false; error: string }>
}

/** Run every check (concurrently); a check that throws has failed. */
export async function evaluateReadiness(checks: readonly ReadinessCheck[]): Promise<ReadinessReport> {
  const results = await Promise.all(checks.map(async (c) => {
    try {
      return await c.check()
    } catch (err) {
      return `check failed: ${(err as Error)?.message ?? String(err)}`
    }
  }))
  const report: ReadinessReport = { ready: true, failed: [], checks: {} }
  checks.forEach((c, i) => {
    const error = results[i]
    if (error === null || error === undefined) {
      report.checks[c.name] = { ok: true }
    } else {
      report.ready = false
      report.failed.push(c.name)
      report.checks[c.name] = { ok: false, error }
    }
  })
  return report
}

export interface TcpTarget {
  host: string
  port: number
}

/**
 * Whether a TCP connection to the target can be opened (then closed at once,
 * before sending anything: PostgreSQL does not log such a probe). The result
 * is kept for `cacheMs` after it is known and concurrent callers share one
 * attempt, so a busy /readyz opens at most about one connection per period.
 */
export class TcpProbe {
  private last: { at: number; error: string | null } | null = null
  private pending: Promise<string | null> | null = null

  constructor(
    /** Read at every attempt (the target may change on reload). */
    private readonly target: () => TcpTarget,
    private readonly timeoutMs = 1000,
    private readonly cacheMs = 1000,
  ) {}

  /** Null when the target accepted a connection, else why not. */
  check(): Promise<string | null> {
    if (this.last !== null && Date.now() - this.last.at < this.cacheMs) return Promise.resolve(this.last.error)
    this.pending ??= tcpConnect(this.target(), this.timeoutMs).then((error) => {
      this.last = { at: Date.now(), error }
      this.pending = null
      return error
    })
    return this.pending
  }
}

/** Open and close a TCP connection; null on success, else the reason. */
export function tcpConnect(t: TcpTarget, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const where = `${t.host}:${t.port}`
    const s = net.connect({ host: t.host, port: t.port })
    const done = (error: string | null): void => {
      clearTimeout(timer)
      s.removeAllListeners('connect')
      s.on('error', () => undefined)
      s.destroy()
      resolve(error)
    }
    const timer = setTimeout(() => done(`no answer from ${where} within ${timeoutMs} ms`), timeoutMs)
    timer.unref()
    s.once('connect', () => done(null))
    s.once('error', (e: NodeJS.ErrnoException) => done(`cannot connect to ${where}: ${e.code ?? e.message}`))
  })
}
