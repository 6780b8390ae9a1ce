/**
 * Test-only helpers for reading and validating the JSON-lines audit log
 * against schema/audit-record.v1.json (the `pgwitness.audit/v1` contract).
 */
import { readFileSync } from 'node:fs'
import Ajv2020Module from 'ajv/dist/2020.js'
import addFormatsModule from 'ajv-formats'
import type { ErrorObject, ValidateFunction } from 'ajv'
import type { AuditRecord } from '../../src/evidence/types.js'

// ajv and ajv-formats are CommonJS; under NodeNext the default import is
// `module.exports`, whose `.default` is the real export (they are the same
// object at run time, but the type declarations only describe `.default`).
type Ajv2020Ctor = typeof Ajv2020Module.default
type AddFormats = typeof addFormatsModule.default
const Ajv2020 = ((Ajv2020Module as unknown as { default?: Ajv2020Ctor }).default ??
  (Ajv2020Module as unknown as Ajv2020Ctor))
const addFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ??
  (addFormatsModule as unknown as AddFormats))

/** Absolute path of the v1 JSON Schema. */
export const AUDIT_SCHEMA_PATH = new URL('../../schema/audit-record.v1.json', import.meta.url)

let validator: ValidateFunction | undefined

function getValidator(): ValidateFunction {
  if (!validator) {
    const schema = JSON.parse(readFileSync(AUDIT_SCHEMA_PATH, 'utf8')) as Record<string, unknown>
    const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true })
    addFormats(ajv)
    validator = ajv.compile(schema)
  }
  return validator
}

function describeError(e: ErrorObject): string {
  const where = e.instancePath === '' ? '(record)' : e.instancePath
  const params = e.params as Record<string, unknown>
  let extra = ''
  if (e.keyword === 'additionalProperties') extra = ` (${String(params['additionalProperty'])})`
  else if (e.keyword === 'enum') extra = ` (${JSON.stringify(params['allowedValues'])})`
  else if (e.keyword === 'const') extra = ` (${JSON.stringify(params['allowedValue'])})`
  return `${where} ${e.message ?? e.keyword}${extra}  [${e.schemaPath}]`
}

/**
 * Validate one record; returns the list of problems (empty when valid).
 * The generic "must match then schema" wrappers are left out.
 */
export function validateRecord(rec: unknown): string[] {
  const validate = getValidator()
  if (validate(rec)) return []
  const errors = (validate.errors ?? []).filter(
    (e) =>
      e.keyword !== 'if' &&
      // The `null` alternative of a nullable field failing is noise: the
      // other alternative's error and the oneOf summary say what is wrong.
      !(e.keyword === 'type' && e.schemaPath.endsWith('/oneOf/0/type') && (e.params as { type?: unknown }).type === 'null'),
  )
  // The same problem can be reported through two schema paths (the envelope
  // and the per-type branch); keep the first.
  const seen = new Set<string>()
  const lines: string[] = []
  for (const e of errors) {
    const key = `${e.instancePath}\0${e.message ?? ''}\0${JSON.stringify(e.params)}`
    if (seen.has(key)) continue
    seen.add(key)
    lines.push(describeError(e))
  }
  return lines.length > 0 ? lines : (validate.errors ?? []).map(describeError)
}

/**
 * Validate one record against schema/audit-record.v1.json; throws an Error
 * listing the problems and the record if invalid.
 */
export function assertValidRecord(rec: unknown): void {
  const problems = validateRecord(rec)
  if (problems.length === 0) return
  const type =
    rec !== null && typeof rec === 'object' && 'type' in rec ? String((rec as { type: unknown }).type) : '?'
  throw new Error(
    `audit record (type ${type}) does not match schema/audit-record.v1.json:\n` +
      problems.map((p) => `  - ${p}`).join('\n') +
      `\nrecord: ${JSON.stringify(rec, null, 2)}`,
  )
}

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
}

/**
 * Parse JSON-lines text. With `ignorePartialTail`, a final line without its
 * terminating `\n` (a write in progress) is left out instead of parsed.
 */
function parseLines(text: string, path: string, ignorePartialTail: boolean): AuditRecord[] {
  const lines = text.split('\n')
  // text.split leaves '' after a final '\n'; otherwise the last element is an
  // unterminated tail.
  const tail = lines.pop()!
  if (tail !== '' && !ignorePartialTail) lines.push(tail)
  const out: AuditRecord[] = []
  lines.forEach((line, i) => {
    const lineNo = i + 1
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (err) {
      const snippet = line.length > 200 ? line.slice(0, 200) + '…' : line
      throw new Error(
        `${path}:${lineNo}: not valid JSON (${(err as Error).message}): ${JSON.stringify(snippet)}`,
      )
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new Error(`${path}:${lineNo}: not a JSON object`)
    }
    out.push(value as AuditRecord)
  })
  return out
}

/**
 * Read a JSON-lines audit file, parse each line (a bad line throws with its
 * line number). Missing file => [].
 */
export function readAuditLog(path: string): AuditRecord[] {
  const text = readText(path)
  if (text === null) return []
  return parseLines(text, path, false)
}

/** readAuditLog + assertValidRecord on every record. */
export function readValidAuditLog(path: string): AuditRecord[] {
  const recs = readAuditLog(path)
  recs.forEach((rec, i) => {
    try {
      assertValidRecord(rec)
    } catch (err) {
      throw new Error(`${path}:${i + 1}: ${(err as Error).message}`)
    }
  })
  return recs
}

function summarize(recs: AuditRecord[]): string {
  if (recs.length === 0) return 'no records'
  const counts = new Map<string, number>()
  for (const r of recs) counts.set(String(r.type), (counts.get(String(r.type)) ?? 0) + 1)
  return `${recs.length} record(s): ` + [...counts].map(([t, n]) => `${t}×${n}`).join(', ')
}

/**
 * Poll (every 25 ms, up to timeoutMs, default 5000) until predicate(records)
 * is true; returns the records. A line still being written (no trailing
 * newline yet) is ignored until it is complete. On timeout throws with a
 * summary of the record types present.
 */
export async function waitForRecords(
  path: string,
  predicate: (recs: AuditRecord[]) => boolean,
  timeoutMs = 5000,
): Promise<AuditRecord[]> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const text = readText(path)
    const recs = text === null ? [] : parseLines(text, path, true)
    if (predicate(recs)) return recs
    if (Date.now() >= deadline) {
      throw new Error(
        `waitForRecords: timed out after ${timeoutMs} ms waiting on ${path}` +
          (text === null ? ' (file does not exist)' : '') +
          `; present: ${summarize(recs)}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/**
 * The record interface for one `type` value. Like `Extract<AuditRecord,
 * { type: T }>`, but also works for interfaces whose `type` is a union
 * (ProxyStartRecord covers both 'proxy.start' and 'proxy.stop', so a plain
 * Extract for 'proxy.stop' would be `never`).
 */
export type RecordOfType<T extends AuditRecord['type']> = AuditRecord extends infer R
  ? R extends AuditRecord
    ? T extends R['type']
      ? R & { type: T }
      : never
    : never
  : never

export function recordsOfType<T extends AuditRecord['type']>(recs: AuditRecord[], type: T): RecordOfType<T>[] {
  return recs.filter((r): r is RecordOfType<T> => r.type === type)
}
