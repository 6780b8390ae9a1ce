import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose'

/**
 * A development token issuer: one ES256 key pair whose public half is the
 * dev JWKS the dev config trusts. For `pgwitness token` and the tests only;
 * production tokens come from a real IdP, Kubernetes or SPIRE.
 */
export interface DevIssuerKeys {
  /** Private JWK (with kid and alg). */
  privateJwk: JWK
  jwksPath: string
  keyPath: string
}

export const DEV_ISSUER = 'https://dev.pgwitness.local'
export const DEV_AUDIENCE = 'pgwitness'

export async function createDevIssuerKeys(dir: string, kid = `dev-${Date.now().toString(36)}`): Promise<DevIssuerKeys> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' }
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
  const keyPath = join(dir, 'signing-key.jwk')
  const jwksPath = join(dir, 'jwks.json')
  writeFileSync(keyPath, JSON.stringify(privateJwk, null, 2) + '\n', { mode: 0o600 })
  writeFileSync(jwksPath, JSON.stringify({ keys: [publicJwk] }, null, 2) + '\n')
  return { privateJwk, jwksPath, keyPath }
}

/** Reuse the dev issuer in dir, creating it on first use. */
export async function ensureDevIssuerKeys(dir: string): Promise<DevIssuerKeys> {
  const keyPath = join(dir, 'signing-key.jwk')
  const jwksPath = join(dir, 'jwks.json')
  if (existsSync(keyPath) && existsSync(jwksPath)) {
    return { privateJwk: JSON.parse(readFileSync(keyPath, 'utf8')) as JWK, jwksPath, keyPath }
  }
  return createDevIssuerKeys(dir)
}

export interface DevTokenOptions {
  issuer?: string
  audience?: string | string[]
  subject: string
  /** Lifetime in seconds (default 900). Negative values mint an already-expired token. */
  ttlSeconds?: number
  claims?: Record<string, unknown>
  notBefore?: number
}

export async function mintDevToken(privateJwk: JWK, o: DevTokenOptions): Promise<string> {
  const key = await importJWK(privateJwk, privateJwk.alg ?? 'ES256')
  const now = Math.floor(Date.now() / 1000)
  const jwt = new SignJWT({ ...(o.claims ?? {}) })
    .setProtectedHeader({ alg: privateJwk.alg ?? 'ES256', kid: privateJwk.kid!, typ: 'JWT' })
    .setIssuer(o.issuer ?? DEV_ISSUER)
    .setAudience(o.audience ?? DEV_AUDIENCE)
    .setSubject(o.subject)
    .setIssuedAt(now)
    .setJti(crypto.randomUUID())
    .setExpirationTime(now + (o.ttlSeconds ?? 900))
  if (o.notBefore !== undefined) jwt.setNotBefore(o.notBefore)
  return jwt.sign(key)
}
