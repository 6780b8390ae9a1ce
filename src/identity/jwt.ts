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
}

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

  /** Starts fetching every jwks_url key set at once (cache warm-up; failures are logged, not thrown). */
  constructor(configs: readonly JwtIssuerConfig[], opts: TokenVerifierOptions = {}) {
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
    if (!COMPACT_JWS.test(token)) {
      throw new IdentityError('token_malformed', 'the password is not a JWT (expected a compact JWS token)')
    }
    let alg: unknown
    let unverified: JWTPayload
    try {
      alg = decodeProtectedHeader(token).alg
      unverified = decodeJwt(token)
    } catch {
      throw new IdentityError('token_malformed', 'the token could not be decoded (malformed JWT)')
    }
    if (typeof alg !== 'string' || alg === 'none') {
      throw new IdentityError('algorithm_not_allowed', 'token algorithm "none" is never accepted')
    }
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
    try {
      const verified = await jwtVerify(token, trusted.keys, {
        issuer: cfg.issuer,
        audience: cfg.audience,
        algorithms: cfg.algorithms,
        clockTolerance: cfg.clockSkewSeconds,
        requiredClaims: ['exp'],
      })
      payload = verified.payload
    } catch (err) {
      throw mapJoseError(err, iss)
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
