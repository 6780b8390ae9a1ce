/**
 * Applies the session's statement rules (src/policy/statement-rules.ts) to
 * the statements of one Query or Parse text, as the frontend observer reads
 * it: each statement's verdict for its record, and the refusal of the whole
 * text when a rule in enforce mode refuses any statement of it. A Query is
 * refused whole (nothing of it goes upstream), as PostgreSQL itself would
 * leave it: in its implicit transaction, the statements before a failing one
 * are rolled back.
 */
import type { StatementPolicyInfo } from '../evidence/types.js'
import type { SplitStatement } from '../classify/split.js'
import { SQLSTATE } from '../protocol/errors.js'
import { describeHit, type SessionStatementRules } from '../policy/statement-rules.js'
import type { Denial } from './tracked-statement.js'
import { decodeClientText } from '../protocol/client-encoding.js'
import { splitStatements } from '../classify/split.js'
import { otherReadings, type TextReading } from './pipelined-readings.js'

export interface TextVerdict {
  denial: Denial | null
  /** One per statement (null: nothing to record); null when the rules said nothing. */
  policies: Array<StatementPolicyInfo | null> | null
}

const NOTHING: TextVerdict = { denial: null, policies: null }

/** `exactText`: the text is an exact rendering of the bytes sent (else nothing of it can be classified). */
export function judgeText(rules: SessionStatementRules | null, statements: readonly SplitStatement[], exactText: boolean): TextVerdict {
  if (rules === null) return NOTHING
  let policies: Array<StatementPolicyInfo | null> | null = null
  let denial: Denial | null = null
  statements.forEach((st, i) => {
    const v = rules.evaluate({ command: st.command, classes: st.classes, objects: st.objects, unknown: !exactText || st.command === 'UNKNOWN' })
    if (v === null) return
    ;(policies ??= statements.map(() => null))[i] = v.policy
    if (v.deny !== null && denial === null) {
      const where = statements.length > 1 ? ` (statement ${i + 1} of ${statements.length} in the query; none of them ran)` : ''
      denial = { code: SQLSTATE.insufficientPrivilege, reason: describeHit(v.deny) + where }
    }
  })
  return { denial, policies }
}

/**
 * The verdict on a text sent while earlier statements are unanswered: they
 * may change how the server reads it (pipelined-readings.ts), so it is
 * refused when a rule refuses it under any reading the server could use, not
 * only under the settings known now. Records keep `verdict`'s per-statement
 * policies (those of the current reading). `single`: a Parse, which the
 * server refuses (42601) under a reading that makes it several statements.
 */
export function judgePipelinedText(
  rules: SessionStatementRules | null, bytes: Buffer, current: TextReading, verdict: TextVerdict, single: boolean,
): TextVerdict {
  if (rules === null || verdict.denial !== null) return verdict
  for (const r of otherReadings(bytes, current)) {
    const statements = splitStatements(decodeClientText(bytes, r.encoding).text, r.standardConformingStrings)
    if (single && statements.length !== 1) continue
    // Only the statement structure is in question here, so the reading counts as exact
    // (decoders without PostgreSQL's exact tables still split characters as it does).
    const other = judgeText(rules, statements, true)
    if (other.denial === null) continue
    const setting = r.encoding === current.encoding ? '' : `client_encoding ${r.encoding}`
    const scs = r.standardConformingStrings === current.standardConformingStrings ? '' : `standard_conforming_strings ${r.standardConformingStrings ? 'on' : 'off'}`
    const under = [setting, scs].filter(Boolean).join(' and ')
    return { denial: { code: other.denial.code, reason: `${other.denial.reason}, as the server reads the text under ${under}, which a statement still in flight may set` }, policies: verdict.policies }
  }
  return verdict
}

/** A fastpath FunctionCall names its function by OID only: the proxy cannot classify it. */
export function judgeFunctionCall(rules: SessionStatementRules | null): TextVerdict {
  if (rules === null) return NOTHING
  const v = rules.evaluate({ command: 'FUNCTION CALL', classes: ['FUNCTION'], objects: [], unknown: true })
  if (v === null) return NOTHING
  return { denial: v.deny ? { code: SQLSTATE.insufficientPrivilege, reason: describeHit(v.deny) } : null, policies: [v.policy] }
}

/** Whether a text too long to be read whole must be refused before any of it is forwarded. */
export function refusesUnreadable(rules: SessionStatementRules | null): boolean {
  return rules !== null && rules.refusesUnknown
}
