/**
 * Fetching a JWK set over HTTPS for JwksKeySource: node:https (plain http
 * only for loopback), one deadline for the whole exchange, a size limit, no
 * redirects, an optional private CA; and the failure reasons it reports.
 */
import http from 'node:http'
import https from 'node:https'
import type { JWK } from 'jose'
import { formatDuration, formatSize, isLoopbackHost } from '../config/units.js'

/** A fetch failure; `message` is short and client-safe (no URL), `detail` is for logs. */
export class JwksFetchError extends Error {
  constructor(message: string, readonly detail: string = message) {
    super(message)
    this.name = 'JwksFetchError'
  }
}

/** GET the JWK set; resolves with the parsed JSON. */
export function fetchJwks(url: URL, o: { ca: string | null; timeoutMs: number; maxBytes: number; bearer?: string | null }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopbackHost(url.hostname))) {
      reject(new JwksFetchError('the key set URL must be https://'))
      return
    }
    let done = false
    const settle = (err: Error | null, value?: unknown) => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (err) reject(err)
      else resolve(value)
    }
    const headers: Record<string, string> = { accept: 'application/jwk-set+json, application/json' }
    // A bearer token only ever goes over https (the loopback http exception is for tests without credentials).
    if (o.bearer) {
      if (url.protocol !== 'https:') {
        reject(new JwksFetchError('a jwks_token_file needs an https:// key set URL'))
        return
      }
      headers.authorization = `Bearer ${o.bearer}`
    }
    const options: https.RequestOptions = { method: 'GET', agent: false, headers }
    if (url.protocol === 'https:' && o.ca !== null) options.ca = o.ca
    const req = (url.protocol === 'https:' ? https : http).request(url, options, (res) => {
      if (res.statusCode !== 200) {
        const redirect = res.statusCode !== undefined && res.statusCode >= 300 && res.statusCode < 400 ? ' (redirects are not followed)' : ''
        settle(new JwksFetchError(`HTTP ${res.statusCode ?? '?'}${redirect}`))
        req.destroy()
        return
      }
      const chunks: Buffer[] = []
      let size = 0
      res.on('data', (c: Buffer) => {
        size += c.length
        if (size > o.maxBytes) {
          settle(new JwksFetchError(`the response is larger than ${formatSize(o.maxBytes)}`))
          req.destroy()
        } else chunks.push(c)
      })
      res.on('error', (err) => settle(err))
      res.on('end', () => {
        try {
          settle(null, JSON.parse(Buffer.concat(chunks).toString('utf8')))
        } catch {
          settle(new JwksFetchError('the response is not JSON'))
        }
      })
    })
    const timer = setTimeout(() => {
      settle(new JwksFetchError(`no answer within ${formatDuration(o.timeoutMs)}`))
      req.destroy()
    }, o.timeoutMs)
    req.on('error', (err) => settle(err))
    req.end()
  })
}

/**
 * The public signing keys of a JWK set document; symmetric and private keys
 * are never used. SPIFFE trust bundles mark JWT-SVID keys `use: "jwt-svid"`
 * (and X.509 roots `x509-svid`): the former are signing keys, the latter not.
 */
export function publicSigningKeys(doc: unknown): JWK[] {
  const keys = (doc as { keys?: unknown } | null)?.keys
  if (doc === null || typeof doc !== 'object' || !Array.isArray(keys)) {
    throw new JwksFetchError('the response is not a JWK set (no "keys" array)')
  }
  const out: JWK[] = []
  for (const k of keys) {
    if (k === null || typeof k !== 'object' || Array.isArray(k)) continue
    const j = k as Record<string, unknown>
    if (typeof j.kty !== 'string' || j.kty === 'oct' || 'd' in j) continue
    if (j.use === 'jwt-svid') out.push({ ...(j as JWK), use: 'sig' })
    else if (j.use === undefined || j.use === 'sig') out.push(j as JWK)
  }
  return out
}

/** A short, client-safe reason (no host names or URLs). */
export function describeFetchError(err: unknown): string {
  if (err instanceof JwksFetchError) return err.message
  const code = (err as NodeJS.ErrnoException | null)?.code
  switch (code) {
    case 'ECONNREFUSED': return 'connection refused'
    case 'ECONNRESET': case 'EPIPE': return 'connection reset'
    case 'ENOTFOUND': case 'EAI_AGAIN': return 'host name not resolved'
    case 'ETIMEDOUT': case 'EHOSTUNREACH': case 'ENETUNREACH': return 'host unreachable'
  }
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO|ERR_TLS|ERR_SSL/.test(code)) return `TLS certificate not trusted (${code})`
  return typeof code === 'string' ? code : 'fetch failed'
}
