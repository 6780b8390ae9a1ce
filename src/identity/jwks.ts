/**
 * A JWK set fetched by URL from a trusted issuer (`jwks_url`).
 *
 * - Fetched with node:https (plain http only for loopback), a timeout, a size
 *   limit, no redirects and an optional private CA for the endpoint.
 * - Cached; refreshed in the background every `refreshMs` and on demand when
 *   a token names a key the cache does not hold, at most once per
 *   `minRefreshIntervalMs`; concurrent callers share one in-flight fetch.
 * - A key the issuer stops publishing is still honoured for `keyGraceMs`, so
 *   tokens signed just before a rotation keep working.
 * - With the endpoint down the cached keys keep working; a token whose key is
 *   not cached fails with a reason saying the key set could not be refreshed.
 * - Only the configured URL is ever fetched: `jku`, `x5u` and an embedded
 *   `jwk` in a token header are ignored (keys are looked up by kid and alg).
 */
import {
  calculateJwkThumbprint,
  createLocalJWKSet,
  errors as joseErrors,
  type FlattenedJWSInput,
  type JWK,
  type CompactJWSHeaderParameters,
  type JWTVerifyGetKey,
} from 'jose'
import { readFile } from 'node:fs/promises'
import { describeFetchError, fetchJwks, JwksFetchError, publicSigningKeys } from './jwks-fetch.js'

export { JwksFetchError } from './jwks-fetch.js'

export interface JwksLog {
  info(obj: object, msg: string): void
  warn(obj: object, msg: string): void
}

export const JWKS_DEFAULTS = {
  timeoutMs: 5000,
  refreshMs: 5 * 60_000,
  minRefreshIntervalMs: 10_000,
  keyGraceMs: 60 * 60_000,
  maxBytes: 1024 * 1024,
} as const

export interface JwksSourceOptions {
  url: string
  /** The issuer, for log lines. */
  issuer: string
  /** PEM bundle trusted for the endpoint (replaces the system roots); null = system roots. */
  ca?: string | null
  /** File holding a bearer token sent with each fetch (re-read every time: projected tokens rotate); null = none. */
  tokenFile?: string | null
  timeoutMs?: number
  refreshMs?: number
  minRefreshIntervalMs?: number
  keyGraceMs?: number
  maxBytes?: number
  log?: JwksLog | null
}

export interface JwksStats {
  /** Fetches started (background, start-up and on demand). */
  refreshes: number
  failures: number
  /** Why the last fetch failed; null once a fetch succeeds. */
  lastError: string | null
  /** Epoch ms of the last successful fetch. */
  lastSuccessAt: number | null
  /** Keys trusted now: published ones plus retired ones still within the grace period. */
  keys: number
  retiredKeys: number
}

/** No trusted key matches the token; the message is safe to show the client. */
export class JwksNoKeyError extends joseErrors.JWKSNoMatchingKey {}

interface KeyEntry {
  jwk: JWK
  kid: string | undefined
  /** When the issuer stopped publishing it (epoch ms); null = published. */
  retiredAt: number | null
}

export class JwksKeySource {
  /** For jose's jwtVerify. */
  readonly getKey: JWTVerifyGetKey
  private readonly url: URL
  private readonly o: Required<Omit<JwksSourceOptions, 'url' | 'log' | 'ca' | 'tokenFile'>> & { ca: string | null; tokenFile: string | null; log: JwksLog | null }
  private readonly entries = new Map<string, KeyEntry>()
  private keySet: JWTVerifyGetKey | null = null
  private inFlight: Promise<void> | null = null
  private lastAttemptAt = -Infinity
  private timer: NodeJS.Timeout | null = null
  private started = false
  private closed = false
  private refreshes = 0
  private failures = 0
  private lastError: string | null = null
  private lastSuccessAt: number | null = null

  constructor(opts: JwksSourceOptions) {
    this.url = new URL(opts.url)
    const d = JWKS_DEFAULTS
    this.o = {
      issuer: opts.issuer,
      ca: opts.ca ?? null,
      tokenFile: opts.tokenFile ?? null,
      timeoutMs: opts.timeoutMs ?? d.timeoutMs,
      refreshMs: opts.refreshMs ?? d.refreshMs,
      minRefreshIntervalMs: opts.minRefreshIntervalMs ?? d.minRefreshIntervalMs,
      keyGraceMs: opts.keyGraceMs ?? d.keyGraceMs,
      maxBytes: opts.maxBytes ?? d.maxBytes,
      log: opts.log ?? null,
    }
    this.getKey = (header, token) => this.lookup(header, token)
  }

  /** First fetch now (warms the cache; a failure is logged, not thrown), then every refreshMs. */
  start(): void {
    if (this.started || this.closed) return
    this.started = true
    void this.tick()
  }

  close(): void {
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
  }

  /** Fetch now (not rate-limited), or join the fetch in flight. Never rejects. */
  refresh(): Promise<void> {
    this.inFlight ??= this.fetchAndStore().finally(() => {
      this.inFlight = null
    })
    return this.inFlight
  }

  stats(): JwksStats {
    this.prune()
    const retired = [...this.entries.values()].filter((e) => e.retiredAt !== null).length
    return {
      refreshes: this.refreshes,
      failures: this.failures,
      lastError: this.lastError,
      lastSuccessAt: this.lastSuccessAt,
      keys: this.entries.size,
      retiredKeys: retired,
    }
  }

  private async tick(): Promise<void> {
    await this.refresh()
    if (this.closed) return
    // After a failure, try again sooner than the regular period.
    const delay = this.lastError === null ? this.o.refreshMs : Math.min(this.o.refreshMs, Math.max(this.o.minRefreshIntervalMs, 30_000))
    this.timer = setTimeout(() => void this.tick(), delay)
    this.timer.unref()
  }

  private async lookup(header: CompactJWSHeaderParameters, token: FlattenedJWSInput) {
    try {
      return await this.currentKeySet()(header, token)
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err
    }
    if (await this.refreshOnDemand()) {
      try {
        return await this.currentKeySet()(header, token)
      } catch (err) {
        if (!(err instanceof joseErrors.JWKSNoMatchingKey)) throw err
      }
    }
    const kid = typeof header.kid === 'string' ? `with kid "${printable(header.kid)}"` : 'matching the token (it names no kid)'
    const why = this.lastError !== null
      ? `the issuer's key set could not be refreshed: ${this.lastError}`
      : 'unknown kid or key type'
    throw new JwksNoKeyError(`no key ${kid} in the issuer's key set (${why})`)
  }

  /** Join the fetch in flight, or start one unless one started less than minRefreshIntervalMs ago. */
  private async refreshOnDemand(): Promise<boolean> {
    if (this.inFlight) {
      await this.inFlight
      return true
    }
    if (this.closed || Date.now() - this.lastAttemptAt < this.o.minRefreshIntervalMs) return false
    await this.refresh()
    return true
  }

  private async fetchAndStore(): Promise<void> {
    this.lastAttemptAt = Date.now()
    this.refreshes++
    const first = this.lastSuccessAt === null
    try {
      const bearer = this.o.tokenFile === null ? null : await readBearerToken(this.o.tokenFile)
      const doc = await fetchJwks(this.url, { ca: this.o.ca, timeoutMs: this.o.timeoutMs, maxBytes: this.o.maxBytes, bearer })
      await this.store(publicSigningKeys(doc))
      this.lastError = null
      this.lastSuccessAt = Date.now()
    } catch (err) {
      this.failures++
      this.lastError = describeFetchError(err)
      const detail = err instanceof JwksFetchError ? err.detail : err instanceof Error ? err.message : String(err)
      this.o.log?.warn(
        { issuer: this.o.issuer, jwks_url: this.url.href, err: detail, cachedKeys: this.entries.size },
        first
          ? 'could not fetch the issuer key set (JWKS); retrying on demand and in the background'
          : 'could not refresh the issuer key set (JWKS); the cached keys stay in use',
      )
    }
  }

  private async store(keys: JWK[]): Promise<void> {
    const now = Date.now()
    const seen = new Set<string>()
    let added = 0
    for (const jwk of keys) {
      let id: string
      try {
        id = `${jwk.kid ?? ''}|${await calculateJwkThumbprint(jwk)}`
      } catch {
        continue // a key type jose cannot use
      }
      seen.add(id)
      if (!this.entries.has(id)) added++
      this.entries.set(id, { jwk, kid: jwk.kid, retiredAt: null })
    }
    if (seen.size === 0) throw new JwksFetchError('the key set has no usable public signing keys')
    let retired = 0
    for (const [id, e] of this.entries) {
      if (!seen.has(id) && e.retiredAt === null) {
        e.retiredAt = now
        retired++
      }
    }
    this.keySet = null
    if (added > 0 || retired > 0) {
      this.o.log?.info({ issuer: this.o.issuer, added, retired, keys: this.entries.size }, 'issuer key set (JWKS) changed')
    }
  }

  /** Drop retired keys past the grace period. */
  private prune(): void {
    const cutoff = Date.now() - this.o.keyGraceMs
    for (const [id, e] of this.entries) {
      if (e.retiredAt !== null && e.retiredAt <= cutoff) {
        this.entries.delete(id)
        this.keySet = null
      }
    }
  }

  private currentKeySet(): JWTVerifyGetKey {
    this.prune()
    if (this.keySet === null) {
      const all = [...this.entries.values()]
      const publishedKids = new Set(all.filter((e) => e.retiredAt === null && e.kid !== undefined).map((e) => e.kid))
      // A retired key whose kid the issuer now uses for another key is dropped: the kid means the new key.
      const keys = all.filter((e) => e.retiredAt === null || e.kid === undefined || !publishedKids.has(e.kid)).map((e) => e.jwk)
      this.keySet = keys.length > 0 ? createLocalJWKSet({ keys }) : () => Promise.reject(new joseErrors.JWKSNoMatchingKey())
    }
    return this.keySet
  }
}

function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?')
  return clean.length <= 64 ? clean : clean.slice(0, 64) + '…'
}

/** The bearer token for the key set endpoint (e.g. the pod's projected service-account token). */
async function readBearerToken(file: string): Promise<string> {
  try {
    const token = (await readFile(file, 'utf8')).trim()
    if (token === '' || /\s/.test(token)) throw new Error('empty or not a single token')
    return token
  } catch (err) {
    throw new JwksFetchError('cannot read the jwks_token_file', `${file}: ${(err as Error).message}`)
  }
}
