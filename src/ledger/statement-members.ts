/**
 * A statement record's own members (evidence/records.ts statementOwnMembers:
 * id, outcome, policy, schema, statement, time, type) serialized as
 * canonical [name, `"name":value`] pairs without walking the record as a
 * generic object: the member names and their order are known, and a
 * statement's fixed facts (text, command, classes, objects, names) are the
 * same objects for every execution of it (the classifier caches its split
 * by text), so their canonical text is made once and reused; per execution
 * only seq, parameters, portal, transaction and the outcome are serialized
 * (the common shapes of parameters and transaction by name too).
 *
 * The result is exactly canonicalMembers(own) (RFC 8785) for every record
 * statementOwnMembers builds: test/unit/statement-members.test.ts checks it
 * over generated statements, every optional member included. Anything not
 * I-JSON throws CanonicalJsonError, as canonicalMembers does (it is an
 * OwnSerializer: AuditChain.seal then takes its sanitizing path).
 */
import { canonicalize, canonicalNumber, canonicalString } from './canonical-json.js'
import type { StatementInfo, StatementRecord, Unchained } from '../evidence/types.js'

type StatementOwn = Pick<Unchained<StatementRecord>, 'schema' | 'id' | 'time' | 'type' | 'statement' | 'outcome' | 'policy'>

/** A statement's fixed facts, as serialized, and the values they were serialized from (compared by identity). */
interface FixedParts {
  classes: readonly string[]
  command: string
  functionOid: number | null
  governed: true | undefined
  preparedName: string | null
  protocol: string
  split: 'server' | undefined
  text: string | null
  encoding: string | undefined
  raw: string | undefined
  truncated: boolean
  /** `{"classes":…,"command":…,"function_oid":…[,"governed_setting_changed":true],"in_transaction":` */
  head: string
  /** `,"objects":…,"parameters":` */
  objects: string
  /** `,"prepared_name":…,"protocol":…,"seq":` */
  names: string
  /** `[,"split":"server"],"text":…[,"text_encoding":…][,"text_raw_base64":…],"text_truncated":…,"transaction":` */
  tail: string
}

/**
 * Fixed parts by the statement's `objects` array: one array per classified
 * statement, shared by its executions (and by every session: the
 * classifier never changes a split once made, so a cached text cannot go
 * stale), and gone (with its entry) when the classifier's cache and the
 * sessions that prepared it let go of it. The other facts are compared too:
 * one text may be prepared under several names, or arrive truncated.
 */
const fixedByObjects = new WeakMap<object, FixedParts>()

function fixedParts(st: StatementInfo): FixedParts {
  const cached = fixedByObjects.get(st.objects)
  if (cached !== undefined && cached.classes === st.classes && cached.command === st.command && cached.functionOid === st.function_oid &&
    cached.governed === st.governed_setting_changed && cached.preparedName === st.prepared_name && cached.protocol === st.protocol &&
    cached.split === st.split && cached.text === st.text && cached.encoding === st.text_encoding && cached.raw === st.text_raw_base64 &&
    cached.truncated === st.text_truncated) {
    return cached
  }
  const made: FixedParts = {
    classes: st.classes, command: st.command, functionOid: st.function_oid, governed: st.governed_setting_changed,
    preparedName: st.prepared_name, protocol: st.protocol, split: st.split, text: st.text, encoding: st.text_encoding,
    raw: st.text_raw_base64, truncated: st.text_truncated,
    head: '{"classes":' + canonicalize(st.classes) + ',"command":' + canonicalString(st.command) +
      ',"function_oid":' + (st.function_oid === null ? 'null' : canonicalNumber(st.function_oid)) +
      (st.governed_setting_changed === true ? ',"governed_setting_changed":true' : '') + ',"in_transaction":',
    objects: ',"objects":' + canonicalize(st.objects) + ',"parameters":',
    names: ',"prepared_name":' + nullableString(st.prepared_name) + ',"protocol":' + canonicalString(st.protocol) + ',"seq":',
    tail: (st.split === 'server' ? ',"split":"server"' : '') + ',"text":' + nullableString(st.text) +
      (st.text_encoding !== undefined ? ',"text_encoding":' + canonicalString(st.text_encoding) : '') +
      (st.text_raw_base64 !== undefined ? ',"text_raw_base64":' + canonicalString(st.text_raw_base64) : '') +
      ',"text_truncated":' + (st.text_truncated ? 'true' : 'false') + ',"transaction":',
  }
  fixedByObjects.set(st.objects, made)
  return made
}

function nullableString(s: string | null): string {
  return s === null ? 'null' : canonicalString(s)
}

function nullableNumber(n: number | null): string {
  return n === null ? 'null' : canonicalNumber(n)
}

/**
 * statement.parameters: a text parameter with only its value (what drivers
 * send most) is written by name; every other shape takes the generic walk.
 */
function parametersText(ps: StatementInfo['parameters']): string {
  if (!Array.isArray(ps)) return canonicalize(ps)
  let out = '['
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i]!
    if (i > 0) out += ','
    out += p !== null && p.format === 'text' && p.truncated === undefined && p.length === undefined && p.raw_base64 === undefined
      ? '{"format":"text","value":' + canonicalString(p.value) + '}'
      : canonicalize(p)
  }
  return out + ']'
}

/** statement.transaction: { kind, number } (transactions.ts makes it with exactly these two). */
function transactionText(t: StatementInfo['transaction']): string {
  return '{"kind":' + canonicalString(t.kind) + ',"number":' + canonicalNumber(t.number) + '}'
}

function statementText(st: StatementInfo): string {
  const f = fixedParts(st)
  return f.head + (st.in_transaction ? 'true' : 'false') + f.objects + parametersText(st.parameters) +
    ',"portal":' + nullableString(st.portal) + f.names + canonicalNumber(st.seq) + f.tail + transactionText(st.transaction) + '}'
}

function outcomeText(o: StatementRecord['outcome']): string {
  return '{"command_tag":' + nullableString(o.command_tag) + ',"duration_us":' + nullableNumber(o.duration_us) +
    ',"message":' + nullableString(o.message) + (o.portal_rows !== undefined ? ',"portal_rows":' + canonicalNumber(o.portal_rows) : '') +
    ',"rows":' + nullableNumber(o.rows) + ',"sqlstate":' + nullableString(o.sqlstate) + ',"started_at":' + canonicalString(o.started_at) +
    ',"status":' + canonicalString(o.status) + (o.suspended === true ? ',"suspended":true' : '') + '}'
}

/** canonicalMembers(own) for a statement record's own members. Throws CanonicalJsonError for data outside I-JSON. */
export function statementOwnMemberTexts(own: StatementOwn): Array<[string, string]> {
  const out: Array<[string, string]> = [
    ['id', '"id":' + canonicalString(own.id)],
    ['outcome', '"outcome":' + outcomeText(own.outcome)],
  ]
  if (own.policy !== undefined) out.push(['policy', '"policy":' + canonicalize(own.policy)])
  out.push(
    ['schema', '"schema":' + canonicalString(own.schema)],
    ['statement', '"statement":' + statementText(own.statement)],
    ['time', '"time":' + canonicalString(own.time)],
    ['type', '"type":' + canonicalString(own.type)],
  )
  return out
}
