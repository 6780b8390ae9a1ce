/**
 * Identity inventory: every identity (workload or person) seen in the
 * period — how it authenticated, when, from where, with which credentials
 * (distinct token ids and certificate fingerprints, first and last use:
 * rotation evidence), and which roles and databases it used.
 */

import { bump, identityKey, iso, topEntries, type SeenRecord, type Section } from './record-facts.js'

/** Per identity: source addresses, roles, databases kept (more are counted as "(more)"). */
const KEYS_CAP = 100
/** Per identity: credentials listed with first and last use; beyond it only counted. */
const CREDENTIALS_CAP = 200

interface Credential {
  first: number
  last: number
  sessions: number
}

interface IdentityEntry {
  method: string
  issuer: string
  subject: string
  spiffeIds: Set<string>
  first: number
  last: number
  sessions: number
  statements: number
  sources: Map<string, number>
  roles: Map<string, number>
  databases: Map<string, number>
  rules: Map<string, number>
  tokens: Map<string, Credential>
  certs: Map<string, Credential>
  /** Credentials seen beyond CREDENTIALS_CAP (counted once each time they start a session). */
  moreCredentialUses: number
  intact: boolean
}

export interface InventoryJson {
  identity: string
  method: string
  issuer: string
  subject: string
  spiffe_ids: string[]
  first_seen: string | null
  last_seen: string | null
  sessions: number
  statements: number
  source_addresses: Array<{ key: string; count: number }>
  roles: Array<{ key: string; count: number }>
  databases: Array<{ key: string; count: number }>
  policy_rules: Array<{ key: string; count: number }>
  token_ids: Array<{ id: string; first_seen: string | null; last_seen: string | null; sessions: number }>
  cert_sha256: Array<{ id: string; first_seen: string | null; last_seen: string | null; sessions: number }>
  credentials_not_listed: number
  /** False when any record behind this row is past the first integrity problem. */
  intact: boolean
}

export class Inventory implements Section {
  readonly identities = new Map<string, IdentityEntry>()

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type !== 'session.start' && rec.type !== 'statement') return
    const id = rec.identity
    const key = identityKey(id)!
    let e = this.identities.get(key)
    if (e === undefined) {
      e = {
        method: id.method, issuer: id.issuer, subject: id.subject, spiffeIds: new Set(), first: r.ms, last: r.ms, sessions: 0, statements: 0,
        sources: new Map(), roles: new Map(), databases: new Map(), rules: new Map(), tokens: new Map(), certs: new Map(), moreCredentialUses: 0, intact: true,
      }
      this.identities.set(key, e)
    }
    e.first = Math.min(e.first, r.ms)
    e.last = Math.max(e.last, r.ms)
    if (!r.intact) e.intact = false
    if (rec.type === 'statement') {
      e.statements++
      return
    }
    e.sessions++
    if (id.spiffe_id !== null && e.spiffeIds.size < KEYS_CAP) e.spiffeIds.add(id.spiffe_id)
    if (rec.connection) bump(e.sources, rec.connection.client.address, KEYS_CAP)
    bump(e.roles, rec.upstream.role, KEYS_CAP)
    bump(e.databases, rec.upstream.database, KEYS_CAP)
    if (id.policy_rule !== null) bump(e.rules, id.policy_rule, KEYS_CAP)
    this.credential(e, e.tokens, id.token_id, r.ms)
    this.credential(e, e.certs, id.cert_sha256 ?? rec.connection?.tls?.client_cert_sha256 ?? null, r.ms)
  }

  private credential(e: IdentityEntry, map: Map<string, Credential>, id: string | null, ms: number): void {
    if (id === null) return
    const c = map.get(id)
    if (c !== undefined) {
      c.last = Math.max(c.last, ms)
      c.sessions++
    } else if (map.size < CREDENTIALS_CAP) {
      map.set(id, { first: ms, last: ms, sessions: 1 })
    } else {
      e.moreCredentialUses++
    }
  }

  /** Identities in first-seen order. */
  toJSON(): InventoryJson[] {
    const creds = (m: Map<string, Credential>) =>
      [...m].map(([id, c]) => ({ id, first_seen: iso(c.first), last_seen: iso(c.last), sessions: c.sessions })).sort((a, b) => (a.first_seen ?? '').localeCompare(b.first_seen ?? ''))
    return [...this.identities].sort((a, b) => a[1].first - b[1].first).map(([key, e]) => ({
      identity: key,
      method: e.method,
      issuer: e.issuer,
      subject: e.subject,
      spiffe_ids: [...e.spiffeIds],
      first_seen: iso(e.first),
      last_seen: iso(e.last),
      sessions: e.sessions,
      statements: e.statements,
      source_addresses: topEntries(e.sources),
      roles: topEntries(e.roles),
      databases: topEntries(e.databases),
      policy_rules: topEntries(e.rules),
      token_ids: creds(e.tokens),
      cert_sha256: creds(e.certs),
      credentials_not_listed: e.moreCredentialUses,
      intact: e.intact,
    }))
  }
}

