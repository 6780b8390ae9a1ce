/**
 * What the StatementTracker (statement-tracker.ts) keeps per frontend message
 * while it waits for the server's answer (Entry), the statement descriptions
 * it builds from them, and the re-reading of texts pipelined behind a change
 * of client_encoding or standard_conforming_strings. Pure.
 */
import type { OutcomeStatus, StatementInfo, StatementPolicyInfo } from '../evidence/types.js'
import { splitSent, unparsedStatement, withOrigin, type SplitStatement, type TextOrigin } from '../classify/split.js'
import { nowMicros } from '../util/time.js'
import type { QueryResult } from './query-results.js'
import type { TxControl } from './transactions.js'
import { capText, rowsOf, statusOf } from './tracked-statement.js'
import type { BackendError, Denial, Prepared, RereadableParameters, RereadableText, StatementBase } from './tracked-statement.js'

export const UNKNOWN_STATEMENT: SplitStatement = unparsedStatement('')
export const FUNCTION_CALL: SplitStatement = { ...unparsedStatement('', 'FUNCTION CALL'), classes: ['FUNCTION'] }

export interface Names {
  parameters: StatementInfo['parameters']
  preparedName: string | null
  portal: string | null
}
export const NO_NAMES: Names = { parameters: null, preparedName: null, portal: null }

export type Entry =
  | {
    kind: 'query'; text: string; truncated: boolean; origin: TextOrigin | null; statements: readonly SplitStatement[]; denial: Denial | null
    /** Strict durability: the first intent key, and how many intents were given (one per statement as first split). */
    keyBase: number; intents: number
    results: QueryResult[]; rows: number; startedAt: number; reread: RereadableText | null
    policies: ReadonlyArray<StatementPolicyInfo | null> | null
    /** A replication command: its results are merged into one (SentText.replication). */
    merged: boolean
  }
  | { kind: 'parse'; stmt: Prepared; sentAt: number; reread: RereadableText | null; policy: StatementPolicyInfo | null }
  | { kind: 'bind'; portal: string; statement: string; parameters: StatementInfo['parameters']; sentAt: number; reread: RereadableParameters | null }
  | { kind: 'execute'; portal: string; key: number; sentAt: number; rows: number }
  | { kind: 'function'; base: StatementBase; rows: number; denial: Denial | null }
  | { kind: 'describe' }
  | { kind: 'close'; target: 'S' | 'P'; name: string }
  | { kind: 'sync' }

/** A statement the server finished, before it gets its place in the session (seq, transaction). */
export interface Finished {
  base: StatementBase
  status: OutcomeStatus
  tag: string | null
  rows: number | null
  suspended: boolean
  portalRows: number | null
  err: BackendError | null
  endedAt: number
  ctl: TxControl | null
}

export function statementBase(
  protocol: StatementBase['protocol'], split: SplitStatement, truncated: boolean, names: Names, startedAtUs: number, key: number, maxStatementBytes: number,
): StatementBase {
  const { text, truncated: cut } = capText(split.text, maxStatementBytes)
  return {
    key, protocol, text, textTruncated: truncated || cut, parameters: names.parameters, preparedName: names.preparedName,
    portal: names.portal, functionOid: null, command: split.command, classes: split.classes, objects: split.objects as StatementInfo['objects'],
    node: split.node, split: 'parser', governedSettingChanged: split.governedSetting, textOrigin: split.origin ?? null,
    policy: split.policy ?? null, startedAtUs,
  }
}

export function finished(base: StatementBase, status: OutcomeStatus, tag: string | null, counted: number, err: BackendError | null, ctl: TxControl | null, endedAt = nowMicros()): Finished {
  return { base, status, tag, rows: status === 'denied' ? null : rowsOf(tag, counted, status), suspended: false, portalRows: null, err, endedAt, ctl }
}

/** A statement the server refused: as itself, or as the proxy's denial when the proxy refused it. */
export function refused(base: StatementBase, denial: Denial | null, err: BackendError): Finished {
  return denial ? finished(base, 'denied', null, 0, denialError(denial), null) : finished(base, statusOf(err), null, 0, err, null)
}

/** A statement sent but never answered (the session ended first). */
export function unanswered(base: StatementBase, now: number): Finished {
  return finished(base, 'unknown', null, 0, null, null, now)
}

/** Drops an entry's Rereadable (its batch has started, or it is answered); true if it had one. */
export function dropReread(e: Entry): boolean {
  if ((e.kind !== 'query' && e.kind !== 'parse' && e.kind !== 'bind') || e.reread === null) return false
  e.reread = null
  return true
}

/**
 * The entries of the batch starting at `head` (up to its Sync, or one Query)
 * are read now by the server, under the settings named `now`: those read
 * under others are read again. Returns how many Rereadables it dropped.
 */
export function readBatchAgain(expect: Entry[], head: number, rereadable: number, now: string | undefined): number {
  let dropped = 0
  for (let i = head; i < expect.length && dropped < rereadable; i++) {
    const e = expect[i]!
    if (e.kind === 'sync') break
    if ((e.kind !== 'query' && e.kind !== 'parse' && e.kind !== 'bind') || e.reread === null) continue
    if (e.reread.readUnder !== now) {
      if (e.kind === 'query') {
        const r = e.reread.again()
        e.text = r.text
        e.origin = r.origin ?? null
        e.statements = withPolicies(splitSent(r.text, r.origin), e.policies)
      } else if (e.kind === 'parse') {
        const r = e.reread.again()
        const split = parsedSplit(r.text, false, r.origin, e.policy)
        e.stmt.text = split.text
        e.stmt.split = split
      } else {
        e.parameters = e.reread.again()
      }
    }
    dropReread(e)
    dropped++
    if (e.kind === 'query') break
  }
  return dropped
}

/** How a Parse's text is described: its one statement; several (the server refuses the Parse, 42601) or a prefix: UNKNOWN, whole. */
export function parsedSplit(text: string, truncated: boolean, origin: TextOrigin | undefined, policy: StatementPolicyInfo | null): SplitStatement {
  const all = truncated ? withOrigin([unparsedStatement(text)], origin) : splitSent(text, origin)
  const split = all.length === 1 ? all[0]! : withOrigin([unparsedStatement(text)], origin)[0]!
  return policy === null ? split : { ...split, policy }
}

/** The statement rules' verdicts attached to the statements they were given for (same split), or none. */
export function withPolicies(statements: readonly SplitStatement[], policies: ReadonlyArray<StatementPolicyInfo | null> | null): readonly SplitStatement[] {
  if (policies === null || policies.length !== statements.length || policies.every((p) => p === null)) return statements
  return statements.map((s, i) => (policies[i] ? { ...s, policy: policies[i]! } : s))
}

export function denialError(d: Denial): BackendError {
  return { code: d.code, message: `pgwitness: ${d.reason}` }
}
