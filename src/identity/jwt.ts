import { readFileSync } from 'node:fs'
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'
import type { JwtIssuerConfig } from '../config/types.js'
import { IdentityError, type WorkloadIdentity } from './identity.js'
import { getClaim, selectClaims } from './claims.js'
import { publicSigningKeys } from './jwks-fetch.js'
import { JwksKeySource, JwksNoKeyError, type JwksLog, type JwksStats } from './jwks.js'

/** A compact JWS: three base64url parts. Anything else is not a token. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

interface TrustedIssuer {
  config: JwtIssuerConfig
  keys: JWTVerifyGetKey
  /** For jwks_url issuers. */
  source: JwksKeySource | null
}

export interface TokenVerifierOptions {
  /** Where JWKS fetch failures and key rotations are logged. */
  log?: JwksLog | null
  /** Longest token accepted (bytes); longer ones are refused before any decoding. Default 16384 (limits.max_token_bytes). */
  maxTokenBytes?: number
  /** The clock (ms since the epoch), for tests of the exp/nbf/iat boundaries. Default Date.now. */
  now?: () => number
}

/** Header `typ` values accepted (case-insensitive, optionally with the "application/" prefix, RFC 7515 §4.1.9); absent is fine too. */
const ACCEPTED_TYP = new Set(['jwt', 'at+jwt', 'jose'])

/** Latest NumericDate accepted for exp/nbf/iat: 9999-12-31T23:59:59Z (later cannot be an RFC 3339 audit time). */
const MAX_NUMERIC_DATE = 253402300799

/**
 * Verifies workload tokens (OIDC ID/access tokens, Kubernetes service-account
 * tokens, SPIFFE JWT-SVIDs) against the configured trusted issuers.
 *
 * The issuer is chosen from the token's unverified `iss` only to pick the key
 * set and the rules; everything is then verified by jose with that issuer's
 * own algorithm allow-list, so a token can never select its own algorithm
 * (no `alg: none`, no HMAC keyed with a public key).
 */
export class TokenVerifier {
  private readonly issuers = new Map<string, TrustedIssuer>()
  private readonly maxTokenBytes: number
  private readonly now: () => number

  /** Starts fetching every jwks_url key set at once (cache warm-up; failures are logged, not thrown). */
  constructor(configs: readonly JwtIssuerConfig[], opts: TokenVerifierOptions = {}) {
    this.maxTokenBytes = opts.maxTokenBytes ?? 16384
    this.now = opts.now ?? Date.now
    for (const config of configs) {
      this.issuers.set(config.issuer, { config, ...keySetFor(config, opts.log ?? null) })
    }
  }

  /** Per jwks_url issuer: fetch counters and key counts (for metrics). */
  jwksStats(): Record<string, JwksStats> {
    const out: Record<string, JwksStats> = {}
    for (const [iss, t] of this.issuers) if (t.source) out[iss] = t.source.stats()
    return out
  }

  /** Stops the background JWKS refreshes. */
  close(): void {
    for (const t of this.issuers.values()) t.source?.close()
  }

  async verifyWorkloadToken(token: string): Promise<WorkloadIdentity> {
    if (token.length === 0) throw new IdentityError('token_missing', 'no token was sent as the password')
    // Before any decoding: a huge "token" costs nothing but this comparison (UTF-8 is at least one byte a character).
    if (token.length > this.maxTokenBytes || Buffer.byteLength(token) > this.maxTokenBytes) {
      throw new IdentityError('token_malformed', `the token is larger than ${this.maxTokenBytes} bytes (limits.max_token_bytes)`)
    }
    if (!COMPACT_JWS.test(token)) {
      throw new IdentityError('token_malformed', 'the password is not a JWT (expected a compact JWS token)')
    }
    let header: ReturnType<typeof decodeProtectedHeader>
    let unverified: JWTPayload
    try {
      header = decodeProtectedHeader(token)
      unverified = decodeJwt(token)
    } catch {
      throw new IdentityError('token_malformed', 'the token could not be decoded (malformed JWT)')
    }
    const alg: unknown = header.alg
    if (typeof alg !== 'string' || alg === 'none') {
      throw new IdentityError('algorithm_not_allowed', 'token algorithm "none" is never accepted')
    }
    checkTokenType(header)
    const iss = typeof unverified.iss === 'string' ? unverified.iss : null
    if (iss === null) throw new IdentityError('token_malformed', 'the token has no "iss" claim')
    const trusted = this.issuers.get(iss)
    if (!trusted) {
      throw new IdentityError('issuer_untrusted', `token issuer "${truncate(iss, 200)}" is not trusted`, {
        partial: { issuer: truncate(iss, 200) },
      })
    }
    const cfg = trusted.config
    if (!cfg.algorithms.includes(alg)) {
      throw new IdentityError('algorithm_not_allowed', `token algorithm "${truncate(alg, 20)}" is not allowed for issuer "${iss}"`, {
        partial: { issuer: iss },
      })
    }

    let payload: JWTPayload
    const now = this.now()
    try {
      const verified = await jwtVerify(token, trusted.keys, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        algorithms: cfg.algorithms,
        clockTolerance: cfg.clockSkewSeconds,
        requiredClaims: ['exp'],
        currentDate: new Date(now),
      })
      payload = verified.payload
    } catch (err) {
      throw mapJoseError(err, iss)
    }
    checkTimes(payload, Math.floor(now / 1000), cfg.clockSkewSeconds, iss)
    // RFC 7519 §4.1.3: a string or an array of strings (jose only looks for a match; the record keeps them all).
    if (Array.isArray(payload.aud) && !payload.aud.every((a) => typeof a === 'string')) {
      throw new IdentityError('token_malformed', 'the token claim "aud" must be a string or an array of strings', { partial: { issuer: iss } })
    }

    const subject = getClaim(payload, cfg.subjectClaim)
    if (typeof subject !== 'string' || subject.length === 0) {
      throw new IdentityError('token_malformed', `the token has no "${cfg.subjectClaim}" claim naming the subject`, {
        partial: { issuer: iss },
      })
    }
    const audience = payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud]
    return {
      method: 'jwt',
      subject,
      issuer: iss,
      audience,
      tokenId: typeof payload.jti === 'string' ? payload.jti : null,
      expiresAt: typeof payload.exp === 'number' ? payload.exp : null,
      spiffeId: subject.startsWith('spiffe://') ? subject : null,
      certSha256: null,
      recordedClaims: selectClaims(payload as Record<string, unknown>, cfg.recordClaims),
      claims: payload as Record<string, unknown>,
    }
  }
}

/**
 * RFC 8725 §3.11: a JWT of another kind (a DPoP proof, a logout or security
 * event token, an encrypted or nested token) must not pass for an access
 * token. `typ` may be absent (Kubernetes service-account tokens), JWT (OIDC),
 * at+jwt (RFC 9068) or JOSE (allowed for SPIFFE JWT-SVIDs); a `cty` of JWT
 * announces a nested token and `enc`/`zip` an encrypted one: never accepted
 * (a JWE in its own five-part form is not a compact JWS and never gets here).
 */
function checkTokenType(header: Record<string, unknown>): void {
  const typ = header.typ
  if (typ !== undefined) {
    const t = typeof typ === 'string' ? typ.toLowerCase().replace(/^application\//, '') : null
    if (t === null || !ACCEPTED_TYP.has(t)) {
      const shown = typeof typ === 'string' ? `"${printable(typ)}"` : typeof typ
      throw new IdentityError('token_malformed', `token type (typ) ${shown} is not accepted: expected JWT, at+jwt or JOSE`)
    }
  }
  const cty = header.cty
  if (cty !== undefined && (typeof cty !== 'string' || cty.toLowerCase().replace(/^application\//, '') === 'jwt')) {
    throw new IdentityError('token_malformed', 'nested tokens (cty JWT) are not accepted')
  }
  // Parameters that only an encrypted token (JWE) has: a signed token carrying them is confused or crafted.
  if (header.enc !== undefined || header.zip !== undefined) {
    throw new IdentityError('token_malformed', 'encrypted-token (JWE) header parameters enc/zip are not accepted in a signed token')
  }
}

/**
 * Beyond what jose checks: a token issued in the future (iat beyond the
 * clock skew) is not valid yet, and exp/nbf/iat must lie before the year
 * 10000 (a NumericDate in milliseconds by mistake would otherwise pass as a
 * token valid for 50,000 years).
 */
function checkTimes(payload: JWTPayload, nowSeconds: number, skew: number, iss: string): void {
  const partial = { issuer: iss }
  for (const claim of ['exp', 'nbf', 'iat'] as const) {
    const v = payload[claim]
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v > MAX_NUMERIC_DATE)) {
      throw new IdentityError('token_malformed', `the token claim "${claim}" is out of range (seconds since 1970 before the year 10000)`, { partial })
    }
  }
  if (payload.iat !== undefined && payload.iat > nowSeconds + skew) {
    throw new IdentityError('token_not_yet_valid', 'the token was issued in the future (iat)', { partial })
  }
}

function printable(s: string): string {
  const clean = s.replace(/[^\x20-\x7e]/g, '?')
  return clean.length <= 64 ? clean : clean.slice(0, 64) + '…'
}

function keySetFor(cfg: JwtIssuerConfig, log: JwksLog | null): { keys: JWTVerifyGetKey; source: JwksKeySource | null } {
  if (cfg.jwksFile !== null) {
    const jwks = JSON.parse(readFileSync(cfg.jwksFile, 'utf8'))
    return { keys: createLocalJWKSet({ keys: publicSigningKeys(jwks) }), source: null }
  }
  if (cfg.jwksUrl !== null) {
    const f = cfg.jwksFetch
    const source = new JwksKeySource({
      url: cfg.jwksUrl,
      issuer: cfg.issuer,
      ca: f?.ca ?? null,
      tokenFile: f?.tokenFile ?? null,
      timeoutMs: f?.timeoutMs,
      refreshMs: f?.refreshMs,
      minRefreshIntervalMs: f?.minRefreshIntervalMs,
      keyGraceMs: f?.keyGraceMs,
      log,
    })
    source.start()
    return { keys: source.getKey, source }
  }
  throw new Error(`issuer ${cfg.issuer} has neither jwks_file nor jwks_url`)
}

/** Turn jose's errors into stable reason codes and messages that never echo the token. */
function mapJoseError(err: unknown, iss: string): IdentityError {
  const partial = { issuer: iss }
  if (err instanceof joseErrors.JWTExpired) {
    return new IdentityError('token_expired', 'the token has expired', { partial })
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    // A claim of the wrong type ("nbf" claim must be a number) is malformed, whichever claim it is.
    if (err.reason === 'invalid') {
      return new IdentityError('token_malformed', `the token claim "${err.claim}" is invalid (${err.message})`, { partial })
    }
    switch (err.claim) {
      case 'nbf':
        return new IdentityError('token_not_yet_valid', 'the token is not valid yet (nbf is in the future)', { partial })
      case 'iat':
        return new IdentityError('token_not_yet_valid', 'the token was issued in the future (iat)', { partial })
      case 'aud':
        return new IdentityError('audience_mismatch', 'the token audience does not name this proxy', { partial })
      case 'iss':
        return new IdentityError('issuer_untrusted', 'the token issuer is not trusted', { partial })
      default:
        return new IdentityError('token_malformed', `the token claim "${err.claim}" is invalid (${err.reason})`, { partial })
    }
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return new IdentityError('algorithm_not_allowed', 'the token algorithm is not allowed', { partial })
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new IdentityError('token_signature_invalid', 'the token signature is invalid', { partial })
  }
  if (err instanceof JwksNoKeyError) {
    return new IdentityError('token_signature_invalid', err.message, { partial })
  }
  if (err instanceof joseErrors.JWKSNoMatchingKey) {
    return new IdentityError('token_signature_invalid', 'no trusted key of the issuer matches the token (unknown kid or key type)', { partial })
  }
  if (err instanceof joseErrors.JWKSMultipleMatchingKeys) {
    return new IdentityError('token_signature_invalid', 'the token has no kid and several keys of the issuer could match', { partial })
  }
  if (err instanceof joseErrors.JWKSTimeout) {
    return new IdentityError('token_signature_invalid', 'the issuer key set could not be fetched in time', { partial })
  }
  if (err instanceof joseErrors.JOSENotSupported) {
    return new IdentityError('token_malformed', 'the token uses an unsupported feature (crit header or key type)', { partial })
  }
  if (err instanceof joseErrors.JOSEError) {
    return new IdentityError('token_malformed', 'the token is malformed', { partial })
  }
  return new IdentityError('token_signature_invalid', 'the token could not be verified', { partial })
}

function truncate(s: string, n: number): string {
  return s.length <= n ? s : s.slice(0, n) + '…'
}
