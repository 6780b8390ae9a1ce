import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
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

export async function createDevIssuerKeys(dir: string, kid = `dev-${Date.now().toString(36)}`, jwksPath = join(dir, 'jwks.json')): Promise<DevIssuerKeys> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  mkdirSync(dirname(jwksPath), { recursive: true, mode: 0o700 })
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true })
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg: 'ES256', use: 'sig' }
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' }
  const keyPath = join(dir, 'signing-key.jwk')
  writeFileSync(keyPath, JSON.stringify(privateJwk, null, 2) + '\n', { mode: 0o600 })
  writeFileSync(jwksPath, JSON.stringify({ keys: [publicJwk] }, null, 2) + '\n')
  return { privateJwk, jwksPath, keyPath }
}

/**
 * Reuse the dev issuer in dir (its signing key, and the JWKS at jwksPath),
 * creating it on first use. A JWKS that exists without the signing key next
 * to it is someone else's key set: it is never overwritten.
 */
export async function ensureDevIssuerKeys(dir: string, jwksPath = join(dir, 'jwks.json')): Promise<DevIssuerKeys> {
  const keyPath = join(dir, 'signing-key.jwk')
  const haveKey = existsSync(keyPath)
  const haveJwks = existsSync(jwksPath)
  if (haveKey && haveJwks) {
    return { privateJwk: JSON.parse(readFileSync(keyPath, 'utf8')) as JWK, jwksPath, keyPath }
  }
  if (haveJwks) throw new Error(`${jwksPath} exists but there is no dev signing key next to it (${keyPath}); dev tokens cannot be signed for it`)
  return createDevIssuerKeys(dir, undefined, jwksPath)
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
