/**
 * Findings: what in the period deserves a look, each with the records behind
 * it (chain.seq, time, session; the first RECORDS_PER_FINDING of them).
 * One finding per kind and key (source address, subject, object, identity,
 * credential), counting every record that raised it.
 */
import type { StatementRecord } from '../evidence/types.js'
import { globMatches } from '../policy/glob.js'
import { describeHours, inWorkingHours, type FindingThresholds } from './options.js'
import { changesSchemaOrRoles, identityKey, objectName, refOf, rowsOf, ticketOf, type RecordRef, type SeenRecord } from './record-facts.js'

const RECORDS_PER_FINDING = 20
const FINDINGS_CAP = 5_000
const TRACKED_KEYS_CAP = 500_000

export type FindingKind =
  | 'auth_failures_from_source'
  | 'auth_failures_for_subject'
  | 'privileged_without_ticket'
  | 'privileged_off_hours'
  | 'bulk_read'
  | 'sensitive_object'
  | 'new_identity'
  | 'shared_credential'

export const FINDING_TITLES: Record<FindingKind, string> = {
  auth_failures_from_source: 'Repeated authentication failures from one source address',
  auth_failures_for_subject: 'Repeated authentication failures for one subject',
  privileged_without_ticket: 'Privileged statements without an approval or change ticket',
  privileged_off_hours: 'Privileged activity outside working hours',
  bulk_read: 'Reads returning many rows (bulk export)',
  sensitive_object: 'Statements touching sensitive objects',
  new_identity: 'New identity first seen in the period',
  shared_credential: 'One token or certificate used from more than one source address',
}

const SEVERITY: Record<FindingKind, 'high' | 'medium' | 'low'> = {
  auth_failures_from_source: 'high',
  auth_failures_for_subject: 'high',
  privileged_without_ticket: 'medium',
  privileged_off_hours: 'medium',
  bulk_read: 'medium',
  sensitive_object: 'low',
  new_identity: 'low',
  shared_credential: 'high',
}

export interface Finding {
  kind: FindingKind
  severity: 'high' | 'medium' | 'low'
  title: string
  /** What it is about: an address, a subject, an object, an identity, a credential. */
  key: string
  detail: string
  count: number
  first_time: string
  last_time: string
  records: RecordRef[]
  intact: boolean
}

export class Findings {
  private readonly found = new Map<string, Finding>()
  dropped = 0
  /** Failure times per source / subject: the last `authFailures` of them. */
  private readonly failureTimes = new Map<string, Array<{ ms: number; ref: RecordRef; failures: number }>>()
  /** Identities seen before the period (the baseline for "new"). */
  private readonly before = new Set<string>()
  private sawBefore = false
  /** Credential → the source addresses it was used from (the first two), and its first use. */
  private readonly credentials = new Map<string, { sources: string[]; first: RecordRef }>()

  constructor(private readonly t: FindingThresholds) {}

  /** A record before the period: only remembered as the baseline for new identities. */
  addBefore(r: SeenRecord): void {
    this.sawBefore = true
    if (r.rec.type === 'session.start' && this.before.size < TRACKED_KEYS_CAP) this.before.add(identityKey(r.rec.identity)!)
  }

  /** Whether new identities could be told (the log has records before the period). */
  get hasBaseline(): boolean {
    return this.sawBefore
  }

  add(r: SeenRecord): void {
    const rec = r.rec
    if (rec.type === 'auth.failure') {
      const source = rec.connection?.client.address
      const failures = rec.count ?? 1
      if (source) this.repeatedFailure('auth_failures_from_source', source, r, failures)
      const subject = identityKey(rec.identity)
      if (subject !== null) this.repeatedFailure('auth_failures_for_subject', subject, r, failures)
    } else if (rec.type === 'session.start') {
      const who = identityKey(rec.identity)!
      if (this.sawBefore && !this.before.has(who)) {
        this.raise('new_identity', who, r, `first session ${rec.time} as role ${rec.upstream.role} on ${rec.upstream.database}`)
        if (this.before.size < TRACKED_KEYS_CAP) this.before.add(who)
      }
      const source = rec.connection?.client.address
      if (source) {
        if (rec.identity.token_id !== null) this.credentialUse(`token ${rec.identity.token_id}`, source, r)
        const cert = rec.identity.cert_sha256 ?? rec.connection?.tls?.client_cert_sha256 ?? null
        if (cert !== null) this.credentialUse(`certificate ${cert}`, source, r)
      }
    } else if (rec.type === 'statement') {
      this.statement(rec, r)
    }
  }

  private statement(s: StatementRecord, r: SeenRecord): void {
    const who = identityKey(s.identity)!
    if (changesSchemaOrRoles(s) && s.outcome.status !== 'denied') {
      if (ticketOf(s, this.t.ticketClaims) === null) this.raise('privileged_without_ticket', who, r, `${s.statement.command} by ${who} without ${this.t.ticketClaims.join('/')} claim or approval`)
      if (!inWorkingHours(r.ms, this.t.workingHours)) this.raise('privileged_off_hours', who, r, `${s.statement.command} outside ${describeHours(this.t.workingHours)}`)
    }
    const rows = rowsOf(s)
    if (s.statement.classes.includes('READ') && rows !== null && rows > this.t.bulkRows) {
      this.raise('bulk_read', who, r, `${rows} rows returned (threshold ${this.t.bulkRows})`)
    }
    if (this.t.sensitive.length > 0) {
      for (const o of s.statement.objects) {
        const name = objectName(o)
        const glob = this.t.sensitive.find((g) => globMatches(g.toLowerCase(), name.toLowerCase()) || (o.schema === null && globMatches(g.toLowerCase(), o.name.toLowerCase())))
        if (glob !== undefined) this.raise('sensitive_object', name, r, `${s.statement.command} on ${name} (matches ${glob}) by ${who}`)
      }
    }
  }

  private repeatedFailure(kind: FindingKind, key: string, r: SeenRecord, failures: number): void {
    const id = `${kind}\u0000${key}`
    const existing = this.found.get(id)
    if (existing !== undefined) return this.raise(kind, key, r, existing.detail, failures)
    let recent = this.failureTimes.get(key)
    if (recent === undefined) {
      if (this.failureTimes.size >= TRACKED_KEYS_CAP) return
      this.failureTimes.set(key, (recent = []))
    }
    // A summary record (failures counted within one window, written when it closed) weighs its count.
    recent.push({ ms: r.ms, ref: refOf(r), failures })
    let total = recent.reduce((n, x) => n + x.failures, 0)
    while (total - recent[0]!.failures >= this.t.authFailures) total -= recent.shift()!.failures
    if (total >= this.t.authFailures && r.ms - recent[0]!.ms <= this.t.authWindowMinutes * 60_000) {
      this.raise(kind, key, r, `${this.t.authFailures} or more failures within ${this.t.authWindowMinutes} minutes`)
      // The failures that led up to it are behind the finding too.
      const f = this.found.get(id)
      if (f !== undefined) {
        f.records = recent.map((x) => x.ref)
        f.count = total
        f.first_time = recent[0]!.ref.time
      }
      this.failureTimes.delete(key)
    }
  }

  private credentialUse(credential: string, source: string, r: SeenRecord): void {
    const c = this.credentials.get(credential)
    if (c === undefined) {
      if (this.credentials.size < TRACKED_KEYS_CAP) this.credentials.set(credential, { sources: [source], first: refOf(r) })
      return
    }
    if (c.sources.includes(source)) {
      if (c.sources.length > 1) this.raise('shared_credential', credential, r, `used from ${c.sources.join(', ')}`)
      return
    }
    if (c.sources.length < 10) c.sources.push(source)
    const isNew = !this.found.has(`shared_credential\u0000${credential}`)
    this.raise('shared_credential', credential, r, `used from ${c.sources.join(', ')}`)
    const f = this.found.get(`shared_credential\u0000${credential}`)
    if (isNew && f !== undefined) {
      // The first use (from the first address) is behind the finding too.
      f.records.unshift(c.first)
      f.count++
      f.first_time = c.first.time
    }
  }

  /** `failures`: how many events the record stands for (an auth.failure summary counts as its `count`). */
  private raise(kind: FindingKind, key: string, r: SeenRecord, detail: string, failures = 1): void {
    const id = `${kind}\u0000${key}`
    let f = this.found.get(id)
    if (f === undefined) {
      if (this.found.size >= FINDINGS_CAP) {
        this.dropped++
        return
      }
      f = { kind, severity: SEVERITY[kind], title: FINDING_TITLES[kind], key, detail, count: 0, first_time: r.rec.time, last_time: r.rec.time, records: [], intact: true }
      this.found.set(id, f)
    }
    f.count += failures
    f.detail = detail
    f.last_time = r.rec.time
    if (!r.intact) f.intact = false
    if (f.records.length < RECORDS_PER_FINDING) f.records.push(refOf(r))
  }

  toJSON(): Finding[] {
    const order = { high: 0, medium: 1, low: 2 }
    return [...this.found.values()].sort((a, b) => order[a.severity] - order[b.severity] || a.kind.localeCompare(b.kind) || b.count - a.count)
  }
}
