/**
 * Signed checkpoints of the audit log's hash chain (see "Integrity" in the
 * record contract).
 *
 * A checkpoint record carries a compact JWS (EdDSA over Ed25519) whose
 * payload is the canonical JSON of `{ hash, instance, seq, time }`: the
 * chain head (seq and hash of the record just before the checkpoint), the
 * instance and when it was signed. Because chain.hash commits to every record
 * before it, one valid signature vouches for the whole log up to that seq;
 * whoever rewrites records and recomputes the chain cannot produce a valid
 * signature for the new head without the private key.
 *
 * Signing is synchronous (node:crypto, no jose round trip through promises)
 * so a checkpoint is sealed into the chain exactly where it was decided.
 * Verification accepts only alg EdDSA with a key whose id the header names:
 * no `alg: none`, no algorithm choice left to the token.
 */
import crypto, { type KeyObject } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { canonicalize } from './canonical-json.js'
import type { ChainHead } from './chain.js'

export const CHECKPOINT_TYP = 'pgwitness-checkpoint+jws'

/** What a checkpoint's signature covers. */
export interface CheckpointPayload {
  seq: number
  hash: string
  time: string
  instance: string
}

/** The `checkpoint` member of a checkpoint record. */
export interface CheckpointInfo extends CheckpointPayload {
  key_id: string
  jws: string
}

export class CheckpointKeyError extends Error {
  override readonly name = 'CheckpointKeyError'
}

export interface CheckpointSigningKey {
  keyId: string
  privateKey: KeyObject
  publicKey: KeyObject
}

function b64url(b: Buffer | string): string {
  return Buffer.from(b).toString('base64url')
}

/**
 * RFC 7638 thumbprint of an Ed25519 public key (base64url SHA-256 of its
 * canonical JWK members): the key id, so a verifier holding the public key
 * can compute the same id without being told it.
 */
export function ed25519KeyId(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' })
  const members = `{"crv":"Ed25519","kty":"OKP","x":"${jwk.x}"}`
  return crypto.createHash('sha256').update(members).digest('base64url')
}

function requireEd25519(key: KeyObject, path: string): void {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new CheckpointKeyError(`${path}: checkpoint keys must be Ed25519 (got ${key.asymmetricKeyType ?? key.type}); create one with "pgwitness keygen"`)
  }
}

/** Parse a key file's text: a JWK (private or public) or a PEM key. */
function parseKey(text: string, path: string, want: 'private' | 'public'): KeyObject {
  const trimmed = text.trim()
  try {
    if (trimmed.startsWith('{')) {
      const jwk = JSON.parse(trimmed) as crypto.JsonWebKey
      if (want === 'private') {
        if (typeof jwk.d !== 'string') throw new CheckpointKeyError(`${path}: the JWK has no private part ("d"); the signing key must be the private key`)
        return crypto.createPrivateKey({ key: jwk, format: 'jwk' })
      }
      const { d: _private, ...pub } = jwk
      return crypto.createPublicKey({ key: pub, format: 'jwk' })
    }
    return want === 'private' ? crypto.createPrivateKey(trimmed) : crypto.createPublicKey(trimmed)
  } catch (err) {
    if (err instanceof CheckpointKeyError) throw err
    throw new CheckpointKeyError(`${path}: not a usable ${want} key (JWK or PEM): ${(err as Error).message}`)
  }
}

/** Load the signing key from its file (private JWK or PKCS#8 PEM, Ed25519). */
export function loadCheckpointSigningKey(path: string): CheckpointSigningKey {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new CheckpointKeyError(`cannot read the checkpoint signing key ${path}: ${(err as Error).message}`)
  }
  const privateKey = parseKey(text, path, 'private')
  requireEd25519(privateKey, path)
  const publicKey = crypto.createPublicKey(privateKey)
  return { keyId: ed25519KeyId(publicKey), privateKey, publicKey }
}

/** Every key of several --public-key files, by key id; null when none are given (signatures are then not checked). */
export function loadCheckpointPublicKeyFiles(paths: readonly string[]): Map<string, KeyObject> | null {
  if (paths.length === 0) return null
  return new Map(paths.flatMap((p) => [...loadCheckpointPublicKeys(p)]))
}

/**
 * Load verification keys from a file: a public (or private) JWK, a JWK Set
 * `{ "keys": [...] }`, or a PEM key. Returns them by key id.
 */
export function loadCheckpointPublicKeys(path: string): Map<string, KeyObject> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new CheckpointKeyError(`cannot read public key ${path}: ${(err as Error).message}`)
  }
  const keys = new Map<string, KeyObject>()
  const add = (k: KeyObject) => {
    requireEd25519(k, path)
    keys.set(ed25519KeyId(k), k)
  }
  const trimmed = text.trim()
  if (trimmed.startsWith('{') && Array.isArray((safeJson(trimmed) as { keys?: unknown } | null)?.keys)) {
    for (const jwk of (JSON.parse(trimmed) as { keys: unknown[] }).keys) add(parseKey(JSON.stringify(jwk), path, 'public'))
  } else {
    add(parseKey(trimmed, path, 'public'))
  }
  return keys
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return null
  }
}

/** Sign a chain head. */
export function signCheckpoint(key: CheckpointSigningKey, head: ChainHead, instance: string, time: string): CheckpointInfo {
  const payload: CheckpointPayload = { seq: head.seq, hash: head.hash, time, instance }
  const header = b64url(JSON.stringify({ alg: 'EdDSA', kid: key.keyId, typ: CHECKPOINT_TYP }))
  const body = b64url(canonicalize(payload))
  const signature = crypto.sign(null, Buffer.from(`${header}.${body}`), key.privateKey)
  return { ...payload, key_id: key.keyId, jws: `${header}.${body}.${b64url(signature)}` }
}

export type CheckpointCheck =
  | { ok: true; payload: CheckpointPayload }
  | { ok: false; reason: 'checkpoint_invalid' | 'signature_invalid' | 'unknown_key'; detail: string }

/**
 * Check a checkpoint record's `checkpoint` member: its JWS is well-formed,
 * EdDSA, its payload equals the member's own fields, and (when `keys` are
 * given) its signature verifies with the key its header names.
 */
export function checkCheckpoint(info: unknown, keys: ReadonlyMap<string, KeyObject> | null): CheckpointCheck {
  const bad = (detail: string): CheckpointCheck => ({ ok: false, reason: 'checkpoint_invalid', detail })
  if (info === null || typeof info !== 'object') return bad('the record has no "checkpoint" object')
  const c = info as Record<string, unknown>
  if (typeof c['jws'] !== 'string') return bad('"checkpoint.jws" is missing')
  const parts = c['jws'].split('.')
  if (parts.length !== 3) return bad('"checkpoint.jws" is not a compact JWS (three parts)')
  const [h, p, s] = parts as [string, string, string]
  const header = safeJson(Buffer.from(h, 'base64url').toString('utf8')) as Record<string, unknown> | null
  const payload = safeJson(Buffer.from(p, 'base64url').toString('utf8')) as Record<string, unknown> | null
  if (header === null || payload === null) return bad('the JWS header or payload is not JSON')
  if (header['alg'] !== 'EdDSA') return bad(`the JWS algorithm is ${JSON.stringify(header['alg'])}; only EdDSA is accepted`)
  if (header['crit'] !== undefined) return bad('the JWS has a "crit" header, which checkpoints never use')
  for (const k of ['seq', 'hash', 'time', 'instance'] as const) {
    if (payload[k] !== c[k]) return bad(`the signed payload's ${k} (${JSON.stringify(payload[k])}) differs from the record's checkpoint.${k} (${JSON.stringify(c[k])})`)
  }
  if (header['kid'] !== c['key_id']) return bad('the JWS key id differs from checkpoint.key_id')
  const out = { seq: payload['seq'] as number, hash: payload['hash'] as string, time: payload['time'] as string, instance: payload['instance'] as string }
  if (keys === null) return { ok: true, payload: out }
  const key = typeof header['kid'] === 'string' ? keys.get(header['kid']) : undefined
  if (key === undefined) {
    return { ok: false, reason: 'unknown_key', detail: `signed with key ${JSON.stringify(header['kid'])}, which is not among the public keys given (${[...keys.keys()].join(', ')})` }
  }
  const valid = crypto.verify(null, Buffer.from(`${h}.${p}`), key, Buffer.from(s, 'base64url'))
  if (!valid) return { ok: false, reason: 'signature_invalid', detail: 'the signature does not verify: the checkpoint (and so the chain head it vouches for) was forged or altered' }
  return { ok: true, payload: out }
}

/**
 * Create an Ed25519 key pair for checkpoints: the private JWK (mode 0600,
 * for the proxy's `audit.checkpoint.key`) and the public JWK (for
 * `pgwitness verify --public-key`). Refuses to overwrite an existing file.
 */
export function writeCheckpointKeyPair(privatePath: string, publicPath: string): { keyId: string } {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519')
  const keyId = ed25519KeyId(publicKey)
  const priv = { ...privateKey.export({ format: 'jwk' }), kid: keyId, alg: 'EdDSA', use: 'sig' }
  const pub = { ...publicKey.export({ format: 'jwk' }), kid: keyId, alg: 'EdDSA', use: 'sig' }
  writeFileSync(privatePath, JSON.stringify(priv) + '\n', { mode: 0o600, flag: 'wx' })
  writeFileSync(publicPath, JSON.stringify(pub) + '\n', { mode: 0o644, flag: 'wx' })
  return { keyId }
}
