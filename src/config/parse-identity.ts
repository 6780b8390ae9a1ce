/** `identity:` — trusted JWT issuers and the mTLS identity source. */
import { fail, formatPath, type KeyPath } from './errors.js'
import { ConfigProblems, mapEach } from './problems.js'
import { given, type Reader } from './reader.js'
import type { ApprovalIssuerConfig, IdentityConfig, JwksFetchConfig, JwtIssuerConfig } from './types.js'

export const ASYMMETRIC_ALGORITHMS = [
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA',
] as const

export const DEFAULT_ALGORITHMS = ['RS256', 'ES256', 'EdDSA']

const ISSUER_KEYS = [
  'issuer', 'audience', 'jwks_file', 'jwks_url', 'algorithms',
  'subject_claim', 'record_claims', 'clock_skew_seconds',
  'jwks_ca', 'jwks_token_file', 'jwks_timeout', 'jwks_refresh', 'jwks_min_refresh_interval', 'jwks_key_grace',
]

/** Keys that only mean something with `jwks_url`. */
const JWKS_URL_KEYS = ['jwks_ca', 'jwks_token_file', 'jwks_timeout', 'jwks_refresh', 'jwks_min_refresh_interval', 'jwks_key_grace']

export function parseIdentity(r: Reader, v: unknown): IdentityConfig {
  const path = ['identity']
  if (v === null || v === undefined) return { jwt: [], mtls: { subject: 'spiffe' }, approvals: [] }
  const m = r.mapping(v, path, ['jwt', 'mtls', 'approvals'])

  const problems = new ConfigProblems()
  const jwt = (given(m, 'jwt') ? problems.part(() => parseIssuerList(r, m.jwt, [...path, 'jwt'], ISSUER_KEYS)) : []) ?? []
  const approvals = (given(m, 'approvals') ? problems.part(() => parseApprovalIssuers(r, m.approvals, jwt)) : []) ?? []

  let subject: 'spiffe' | 'cn' = 'spiffe'
  if (given(m, 'mtls')) {
    const mt = r.mapping(m.mtls, [...path, 'mtls'], ['subject'])
    subject = r.oneOf(mt.subject, [...path, 'mtls', 'subject'], ['spiffe', 'cn'] as const, 'spiffe')
  }
  problems.throwIfAny()
  return { jwt, mtls: { subject }, approvals }
}

function parseIssuerList(r: Reader, v: unknown, path: KeyPath, keys: readonly string[]): JwtIssuerConfig[] {
  const seen = new Map<string, number>()
  // Each entry's problems are reported, not only the first entry's.
  return mapEach(r.list(v, path), (item, i) => {
    const issuer = parseIssuer(r, item, [...path, i], keys)
    const prev = seen.get(issuer.issuer)
    if (prev !== undefined) {
      fail([...path, i, 'issuer'], `duplicate issuer (also configured at ${formatPath([...path, prev])})`)
    }
    seen.set(issuer.issuer, i)
    return issuer
  })
}

/** Approval tokens name their subject in `sub` and record nothing but the approval fields. */
const APPROVAL_ISSUER_KEYS = ISSUER_KEYS.filter((k) => k !== 'subject_claim' && k !== 'record_claims')

/**
 * `identity.approvals`: like token issuers. An approvals issuer must not also
 * be a token issuer: an approval could then log in as a token (and a token
 * pass for an approval), whatever claims it carries.
 */
function parseApprovalIssuers(r: Reader, v: unknown, tokenIssuers: readonly JwtIssuerConfig[]): ApprovalIssuerConfig[] {
  const path = ['identity', 'approvals']
  const approvals = parseIssuerList(r, v, path, APPROVAL_ISSUER_KEYS)
  approvals.forEach((a, i) => {
    const j = tokenIssuers.findIndex((t) => t.issuer === a.issuer)
    if (j >= 0) fail([...path, i, 'issuer'], `is also a token issuer (identity.jwt[${j}]); approvals must come from an issuer of their own`)
  })
  return approvals
}

function parseIssuer(r: Reader, v: unknown, path: KeyPath, keys: readonly string[]): JwtIssuerConfig {
  const m = r.mapping(v, path, keys)
  if (!given(m, 'issuer')) fail([...path, 'issuer'], 'is required')
  const issuer = r.string(m.issuer, [...path, 'issuer'])

  if (!given(m, 'audience')) fail([...path, 'audience'], 'is required (a string or a list of strings)')
  const audience = Array.isArray(m.audience)
    ? r.stringList(m.audience, [...path, 'audience'], true)
    : [r.string(m.audience, [...path, 'audience'])]

  const hasFile = given(m, 'jwks_file')
  const hasUrl = given(m, 'jwks_url')
  if (hasFile === hasUrl) {
    fail(path, hasFile ? 'set only one of jwks_file and jwks_url' : 'one of jwks_file or jwks_url is required')
  }
  let jwksFile: string | null = null
  let jwksUrl: string | null = null
  let jwksFetch: JwksFetchConfig | null = null
  if (hasFile) {
    jwksFile = r.path(m.jwks_file, [...path, 'jwks_file'])
    checkJwksFile(r, jwksFile, [...path, 'jwks_file'])
    const stray = JWKS_URL_KEYS.find((k) => given(m, k))
    if (stray !== undefined) fail([...path, stray], 'applies only with jwks_url (a jwks_file is read from disk)')
  } else {
    jwksUrl = parseJwksUrl(r, m.jwks_url, [...path, 'jwks_url'])
    jwksFetch = parseJwksFetch(r, m, path)
  }

  let algorithms = DEFAULT_ALGORITHMS.slice()
  if (given(m, 'algorithms')) {
    const list = r.list(m.algorithms, [...path, 'algorithms'], true)
    algorithms = []
    list.forEach((a, i) => {
      const alg = parseAlgorithm(r, a, [...path, 'algorithms', i])
      if (!algorithms.includes(alg)) algorithms.push(alg)
    })
  }

  const subjectClaim = given(m, 'subject_claim') ? r.string(m.subject_claim, [...path, 'subject_claim']) : 'sub'
  const recordClaims = given(m, 'record_claims') ? r.stringList(m.record_claims, [...path, 'record_claims'], false) : []
  const clockSkewSeconds = r.int(m.clock_skew_seconds, [...path, 'clock_skew_seconds'], 30, 0, 60)

  const cfg: JwtIssuerConfig = { issuer, audience, jwksFile, jwksUrl, algorithms, subjectClaim, recordClaims, clockSkewSeconds }
  if (jwksFetch !== null) cfg.jwksFetch = jwksFetch
  return cfg
}

const SECOND = 1000
const MINUTE = 60 * SECOND
const HOUR = 60 * MINUTE

function parseJwksFetch(r: Reader, m: Record<string, unknown>, path: KeyPath): JwksFetchConfig {
  let ca: string | null = null
  let caPath: string | null = null
  if (given(m, 'jwks_ca')) {
    caPath = r.path(m.jwks_ca, [...path, 'jwks_ca'])
    ca = r.readPem(caPath, [...path, 'jwks_ca'], 'CERTIFICATE')
  }
  return {
    ca,
    caPath,
    tokenFile: given(m, 'jwks_token_file') ? r.path(m.jwks_token_file, [...path, 'jwks_token_file']) : null,
    timeoutMs: r.duration(m.jwks_timeout, [...path, 'jwks_timeout'], 5 * SECOND, 100, MINUTE),
    refreshMs: r.duration(m.jwks_refresh, [...path, 'jwks_refresh'], 5 * MINUTE, SECOND, 24 * HOUR),
    minRefreshIntervalMs: r.duration(m.jwks_min_refresh_interval, [...path, 'jwks_min_refresh_interval'], 10 * SECOND, 100, HOUR),
    keyGraceMs: r.duration(m.jwks_key_grace, [...path, 'jwks_key_grace'], HOUR, 0, 7 * 24 * HOUR),
  }
}

function parseAlgorithm(r: Reader, v: unknown, path: KeyPath): string {
  const alg = r.string(v, path)
  if ((ASYMMETRIC_ALGORITHMS as readonly string[]).includes(alg)) return alg
  if (alg.toLowerCase() === 'none') fail(path, 'none is never accepted')
  if (/^HS\d+$/i.test(alg)) fail(path, `${alg} is a symmetric algorithm; only asymmetric algorithms are accepted`)
  const near = ASYMMETRIC_ALGORITHMS.find((a) => a.toLowerCase() === alg.toLowerCase())
  fail(path, `must be one of ${ASYMMETRIC_ALGORITHMS.join(', ')} (got ${JSON.stringify(alg)}${near ? `; did you mean ${near}?` : ''})`)
}

function parseJwksUrl(r: Reader, v: unknown, path: KeyPath): string {
  const s = r.string(v, path)
  let url: URL
  try {
    url = new URL(s)
  } catch {
    fail(path, 'must be an https:// URL')
  }
  const host = url.hostname.toLowerCase()
  const local = host === 'localhost' || host === '127.0.0.1' || host === '[::1]'
  if (url.protocol === 'https:') return s
  if (url.protocol === 'http:' && local) return s
  fail(path, local ? 'must be an http:// or https:// URL' : 'must be an https:// URL (plain http is allowed only for localhost / 127.0.0.1)')
}

/** The JWKS file must exist and be JSON with a `keys` array (read at start and on SIGHUP; a key set that rotates on its own is better served by jwks_url). */
function checkJwksFile(r: Reader, file: string, path: KeyPath): void {
  const text = r.readText(file, path, 'JWKS file')
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    // The parser's message may quote file content; report only the position.
    const pos = err instanceof Error ? /position (\d+)/.exec(err.message)?.[1] : undefined
    fail(path, `${file} is not valid JSON${pos !== undefined ? ` (error at character ${pos})` : ''}`)
  }
  const keys = (doc as { keys?: unknown } | null)?.keys
  if (doc === null || typeof doc !== 'object' || !Array.isArray(keys)) {
    fail(path, `${file} is not a JWK set: expected a JSON object with a "keys" array`)
  }
  keys.forEach((k, i) => {
    if (k === null || typeof k !== 'object' || typeof (k as { kty?: unknown }).kty !== 'string') {
      fail(path, `${file}: keys[${i}] is not a JWK (a JSON object with "kty")`)
    }
  })
}
