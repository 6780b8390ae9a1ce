/**
 * What the session's statement tracker hands to record building: one
 * statement execution as the server ran (or the proxy refused) it, and the
 * end of a transaction. Defined here, below the session layer, because
 * record building (records.ts) and the tracker (src/session) both speak it.
 */
import type { OutcomeStatus, StatementInfo, StatementPolicyInfo, TransactionKind } from './types.js'
import type { TextOrigin } from '../classify/split.js'

export interface ObservedStatement {
  /**
   * Intent key (strict durability): the number the statement got when it was
   * forwarded (onIntent), 0 when intents are off or for outcomes that are
   * not a forwarded execution (a Parse or Bind refused).
   */
  key: number
  /** statement.seq: 1-based, per session, in the order the server ran the statements. */
  seq: number
  protocol: StatementInfo['protocol']
  text: string | null
  textTruncated: boolean
  parameters: StatementInfo['parameters']
  preparedName: string | null
  portal: string | null
  functionOid: number | null
  command: string
  classes: readonly string[]
  objects: StatementInfo['objects']
  /** Parse tree node of the statement (for statement rules), if parsed. */
  node: Record<string, unknown> | null
  /** "server": the proxy could not split the Query as the server did; `text` is the whole Query. */
  split: 'parser' | 'server'
  inTransaction: boolean
  transaction: { number: number; kind: TransactionKind }
  /** The statement changes application_name or pgwitness.* (SplitStatement.governedSetting). */
  governedSettingChanged: boolean
  status: OutcomeStatus
  commandTag: string | null
  rows: number | null
  /** The Execute stopped at its row limit (PortalSuspended): the portal goes on with the next Execute. */
  suspended: boolean
  /** Rows of every Execute of the portal, on the last of several Executes of one portal; else null. */
  portalRows: number | null
  sqlstate: string | null
  message: string | null
  startedAtUs: number
  durationUs: number | null
  /** The text's client encoding and raw bytes, when it was not sent as plain UTF-8. */
  textOrigin: TextOrigin | null
  /** What statement rules said of it (SplitStatement.policy), or null. */
  policy: StatementPolicyInfo | null
}

export interface TransactionEnd {
  number: number
  outcome: 'committed' | 'rolled_back' | 'prepared' | 'unknown'
  /** commit, implicit_commit, rollback, error, commit_failed, implicit_failure, session_end, commit_prepared, rollback_prepared */
  cause: string
  gid: string | null
  firstSeq: number
  lastSeq: number
  /** Statements undone by ROLLBACK TO SAVEPOINT: inclusive seq ranges with the savepoint. */
  undone: Array<{ first: number; last: number; savepoint: string }>
}
