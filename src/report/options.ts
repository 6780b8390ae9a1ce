/**
 * What a report covers (period, identity, session) and the thresholds its
 * findings use: defaults, overridden by a small YAML file (--findings), then
 * by flags. Problems are reported as `findings: <key>: <problem>`.
 */
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'

export interface WorkingHours {
  /** Minutes after midnight, local time (utcOffsetMinutes), [start, end). */
  start: number
  end: number
  /** 0 = Sunday … 6 = Saturday. */
  days: number[]
  utcOffsetMinutes: number
}

export interface FindingThresholds {
  /** This many authentication failures from one source address or subject within windowMinutes is a finding. */
  authFailures: number
  authWindowMinutes: number
  /** A read returning more rows than this is a bulk export. */
  bulkRows: number
  workingHours: WorkingHours
  /** Globs over `schema.name` (or the bare name) of objects statements touch. */
  sensitive: string[]
  /** Claim names (identity.claims, policy.claims) that carry an approval or change ticket. */
  ticketClaims: string[]
}

export const DEFAULT_THRESHOLDS: FindingThresholds = {
  authFailures: 5,
  authWindowMinutes: 10,
  bulkRows: 10_000,
  workingHours: { start: 8 * 60, end: 18 * 60, days: [1, 2, 3, 4, 5], utcOffsetMinutes: 0 },
  sensitive: [],
  ticketClaims: ['change_ticket', 'ticket', 'approval'],
}

export interface ReportScope {
  /** Epoch ms; records before it are read (verification, baseline for new identities) but not reported. */
  since: number | null
  until: number | null
  /** Glob over identity subject (or SPIFFE id). */
  identity: string | null
  session: string | null
}

export class ReportOptionError extends Error {}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat']

/** `08:00-18:00` → minutes. */
export function parseHours(key: string, s: string): { start: number; end: number } {
  const m = /^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$/.exec(s.trim())
  if (!m) throw new ReportOptionError(`findings: ${key}: expected HH:MM-HH:MM, got ${JSON.stringify(s)}`)
  const start = Number(m[1]) * 60 + Number(m[2])
  const end = Number(m[3]) * 60 + Number(m[4])
  if (start >= end || end > 24 * 60 || Number(m[2]) > 59 || Number(m[4]) > 59) throw new ReportOptionError(`findings: ${key}: ${JSON.stringify(s)} is not a range within one day`)
  return { start, end }
}

function positiveInt(key: string, v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v
  if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) throw new ReportOptionError(`findings: ${key}: expected a positive integer, got ${JSON.stringify(v)}`)
  return n
}

function stringList(key: string, v: unknown): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) throw new ReportOptionError(`findings: ${key}: expected a list of strings`)
  return v as string[]
}

function utcOffset(key: string, v: unknown): number {
  const m = typeof v === 'string' ? /^([+-])(\d{2}):(\d{2})$/.exec(v) : null
  if (!m) throw new ReportOptionError(`findings: ${key}: expected an offset like +01:00, got ${JSON.stringify(v)}`)
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]))
}

const YAML_KEYS = ['auth_failures', 'auth_window_minutes', 'bulk_rows', 'working_hours', 'sensitive', 'ticket_claims']

/** The thresholds file: every key optional, unknown keys refused. */
export function parseThresholdsYaml(text: string, base: FindingThresholds = DEFAULT_THRESHOLDS): FindingThresholds {
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw new ReportOptionError(`findings: not valid YAML (${(err as Error).message.split('\n')[0]})`)
  }
  if (doc === null || doc === undefined) return base
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ReportOptionError('findings: expected a mapping of thresholds')
  const d = doc as Record<string, unknown>
  for (const k of Object.keys(d)) if (!YAML_KEYS.includes(k)) throw new ReportOptionError(`findings: ${k}: unknown key (known: ${YAML_KEYS.join(', ')})`)
  const t: FindingThresholds = { ...base, workingHours: { ...base.workingHours } }
  if (d.auth_failures !== undefined) t.authFailures = positiveInt('auth_failures', d.auth_failures)
  if (d.auth_window_minutes !== undefined) t.authWindowMinutes = positiveInt('auth_window_minutes', d.auth_window_minutes)
  if (d.bulk_rows !== undefined) t.bulkRows = positiveInt('bulk_rows', d.bulk_rows)
  if (d.sensitive !== undefined) t.sensitive = stringList('sensitive', d.sensitive)
  if (d.ticket_claims !== undefined) t.ticketClaims = stringList('ticket_claims', d.ticket_claims)
  if (d.working_hours !== undefined) {
    const w = d.working_hours
    if (w === null || typeof w !== 'object' || Array.isArray(w)) throw new ReportOptionError('findings: working_hours: expected { hours: "08:00-18:00", days: [mon, …], utc_offset: "+00:00" }')
    const wh = w as Record<string, unknown>
    for (const k of Object.keys(wh)) if (!['hours', 'days', 'utc_offset'].includes(k)) throw new ReportOptionError(`findings: working_hours.${k}: unknown key (known: hours, days, utc_offset)`)
    if (wh.hours !== undefined) Object.assign(t.workingHours, parseHours('working_hours.hours', String(wh.hours)))
    if (wh.days !== undefined) {
      t.workingHours.days = stringList('working_hours.days', wh.days).map((day) => {
        const i = DAYS.indexOf(day.toLowerCase().slice(0, 3))
        if (i < 0) throw new ReportOptionError(`findings: working_hours.days: ${JSON.stringify(day)} is not a day (mon … sun)`)
        return i
      })
    }
    if (wh.utc_offset !== undefined) t.workingHours.utcOffsetMinutes = utcOffset('working_hours.utc_offset', wh.utc_offset)
  }
  return t
}

export function loadThresholds(file: string | null): FindingThresholds {
  if (file === null) return DEFAULT_THRESHOLDS
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    throw new ReportOptionError(`findings: cannot read ${file}: ${(err as Error).message}`)
  }
  return parseThresholdsYaml(text)
}

/** --since/--until: RFC 3339 (or a date) → epoch ms. */
export function parseTime(flag: string, s: string | undefined): number | null {
  if (s === undefined) return null
  const ms = Date.parse(s)
  if (Number.isNaN(ms)) throw new ReportOptionError(`report: --${flag}: not a time: ${JSON.stringify(s)} (use RFC 3339, e.g. 2026-12-01T00:00:00Z)`)
  return ms
}

/** Is `ms` inside working hours? */
export function inWorkingHours(ms: number, w: WorkingHours): boolean {
  const local = new Date(ms + w.utcOffsetMinutes * 60_000)
  const minute = local.getUTCHours() * 60 + local.getUTCMinutes()
  return w.days.includes(local.getUTCDay()) && minute >= w.start && minute < w.end
}

export function describeHours(w: WorkingHours): string {
  const hm = (m: number) => `${String(Math.floor(m / 60)).padStart(2, '0')}:${String(m % 60).padStart(2, '0')}`
  const off = w.utcOffsetMinutes
  const sign = off < 0 ? '-' : '+'
  return `${w.days.map((d) => DAYS[d]).join(',')} ${hm(w.start)}-${hm(w.end)} UTC${sign}${hm(Math.abs(off))}`
}
