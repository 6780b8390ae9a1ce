/**
 * A local HTTPS JWKS endpoint the test controls (keys, failure modes, hit
 * count), with a certificate from the dev PKI, and signing keys to go with it.
 */
import { readFileSync } from 'node:fs'
import https from 'node:https'
import type { AddressInfo } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK, type JWTPayload } from 'jose'
import type { DevPki } from '../../src/dev/pki.js'

export interface SigningKey {
  kid: string
  privateKey: CryptoKey
  publicJwk: JWK
}

export async function signingKey(kid: string, alg = 'ES256'): Promise<SigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true })
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } }
}

/** A signed JWT; `header` adds to (or overrides) { alg: ES256, kid }. */
export async function signToken(key: SigningKey, claims: JWTPayload, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iat: now, exp: now + 600, jti: crypto.randomUUID(), ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey)
}

export type JwksServerMode = 'ok' | 'hang' | 'error500'

export interface JwksServer {
  /** https://127.0.0.1:PORT/jwks */
  url: string
  /** Requests received so far. */
  hits: number
  /** The Authorization header of the last request (null: none). */
  lastAuthorization: string | null
  /** What the endpoint publishes (serialized per request). */
  keys: JWK[]
  mode: JwksServerMode
  /** Delay before answering in mode ok (ms). */
  delayMs: number
  /** Stop listening and drop every connection (the endpoint is then "down": connection refused). */
  close(): Promise<void>
}

export async function startJwksServer(pki: DevPki, keys: JWK[]): Promise<JwksServer> {
  const server = https.createServer({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) })
  let closed: Promise<void> | null = null
  const s: JwksServer = {
    url: '',
    hits: 0,
    lastAuthorization: null,
    keys,
    mode: 'ok',
    delayMs: 0,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closed
    },
  }
  server.on('request', (req, res) => {
    s.hits++
    s.lastAuthorization = req.headers.authorization ?? null
    if (s.mode === 'hang') return
    const answer = () => {
      if (s.mode === 'error500') {
        res.writeHead(500, { 'content-type': 'text/plain' }).end('down for maintenance')
        return
      }
      res.writeHead(200, { 'content-type': 'application/jwk-set+json' }).end(JSON.stringify({ keys: s.keys }))
    }
    if (s.delayMs > 0) setTimeout(answer, s.delayMs)
    else answer()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  s.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`
  return s
}
