/**
 * The transaction effect of a session's statements, derived from what the
 * server says — command tags and ReadyForQuery's status byte — with no query
 * of its own upstream.
 *
 * Every recorded statement gets the session's transaction number and kind:
 * - `autocommit`: a statement that was its own transaction and whose outcome
 *   is final (a single-statement Query; an extended-protocol Execute alone
 *   between two Syncs whose Sync committed);
 * - `implicit`: several statements sharing PostgreSQL's implicit transaction
 *   (a multi-statement Query, a pipeline up to Sync);
 * - `explicit`: inside BEGIN … COMMIT/ROLLBACK.
 * Implicit and explicit transactions end with one TransactionEnd (written as
 * a `transaction.end` record): committed, rolled back (and why) or prepared,
 * the statements it covers, and the ranges that ROLLBACK TO SAVEPOINT undid.
 */
import type { TransactionKind } from '../evidence/types.js'
import type { TransactionEnd } from '../evidence/observed.js'

export type { TransactionEnd }

/** What a statement does to the transaction, from its parse tree or, failing that, its tag. */
export type TxControl =
  | { op: 'begin' }
  | { op: 'commit'; chain: boolean }
  | { op: 'rollback'; chain: boolean }
  | { op: 'savepoint' | 'release' | 'rollback_to'; name: string }
  | { op: 'prepare' | 'commit_prepared' | 'rollback_prepared'; gid: string }

interface OpenTransaction {
  number: number
  kind: TransactionKind
  firstSeq: number
  lastSeq: number
  savepoints: Array<{ name: string; afterSeq: number }>
  undone: TransactionEnd['undone']
  /** An error aborted it (explicit: until ROLLBACK [TO SAVEPOINT]; implicit: it rolls back). */
  failed: boolean
  /** The last statement was a COMMIT that failed (e.g. a deferred constraint), or the commit at Sync failed. */
  commitFailed: boolean
}

export class TransactionTracker {
  private count = 0
  private open: OpenTransaction | null = null

  constructor(private readonly onEnd: (e: TransactionEnd) => void) {}

  /** An explicit transaction block is in progress (statement.in_transaction of the next statement). */
  get inExplicit(): boolean {
    return this.open?.kind === 'explicit'
  }

  /** An implicit or explicit transaction is open (its statements are not final yet). */
  get isOpen(): boolean {
    return this.open !== null
  }

  /**
   * A statement the server ran (or refused while running), in order.
   * `shared`: other statements share its implicit transaction (a
   * multi-statement Query, a pipeline). Returns its transaction.
   */
  statement(seq: number, ctl: TxControl | null, ok: boolean, tag: string | null, shared: boolean): { number: number; kind: TransactionKind } {
    let tx = this.open
    if (tx === null) {
      const kind: TransactionKind = ctl?.op === 'begin' ? 'explicit' : shared ? 'implicit' : 'autocommit'
      tx = this.begin(kind, seq)
    } else if (tx.kind === 'implicit' && ctl?.op === 'begin' && ok) {
      tx.kind = 'explicit' // BEGIN inside a multi-statement Query turns its implicit block into a regular one
    }
    if (tx.firstSeq === 0) tx.firstSeq = seq
    tx.lastSeq = seq
    const ref = { number: tx.number, kind: tx.kind }
    if (!ok) {
      tx.failed = true
      tx.commitFailed = ctl?.op === 'commit' || ctl?.op === 'prepare'
    } else if (ctl !== null) {
      this.control(tx, seq, ctl, tag)
    }
    if (ref.kind === 'autocommit' && this.open === tx) this.open = null
    return ref
  }

  /** The implicit commit at Sync failed (ErrorResponse to the Sync). */
  commitAtSyncFailed(): void {
    if (this.open) {
      this.open.failed = true
      this.open.commitFailed = true
    }
  }

  /** ReadyForQuery: the server's own word on the transaction state ('I', 'T' or 'E'). */
  ready(status: number): void {
    const tx = this.open
    if (status === 0x49 /* I */) {
      if (tx === null) return
      if (tx.kind === 'implicit' && !tx.failed) this.end(tx, 'committed', 'implicit_commit', null)
      else if (tx.commitFailed) this.end(tx, 'rolled_back', 'commit_failed', null)
      else this.end(tx, 'rolled_back', tx.kind === 'implicit' ? 'implicit_failure' : 'error', null)
      return
    }
    // In a block: one the statements did not show opening (e.g. the text could not be split) is explicit.
    if (tx === null) this.begin('explicit', 0)
    else if (tx.kind !== 'explicit') tx.kind = 'explicit'
    if (status === 0x45 /* E */) this.open!.failed = true
  }

  /**
   * The session ended: a transaction still open is rolled back by the server
   * — unless answers were still outstanding (the upstream connection was
   * lost), when its outcome cannot be known.
   */
  sessionEnd(unanswered: boolean): void {
    if (this.open) this.end(this.open, unanswered ? 'unknown' : 'rolled_back', 'session_end', null)
  }

  private begin(kind: TransactionKind, seq: number): OpenTransaction {
    this.open = {
      number: ++this.count, kind, firstSeq: seq, lastSeq: seq, savepoints: [], undone: [], failed: false, commitFailed: false,
    }
    return this.open
  }

  private control(tx: OpenTransaction, seq: number, ctl: TxControl, tag: string | null): void {
    switch (ctl.op) {
      case 'commit':
        // COMMIT of an aborted transaction answers ROLLBACK.
        if (tag === 'ROLLBACK') this.end(tx, 'rolled_back', 'error', null)
        else this.end(tx, 'committed', 'commit', null)
        if (ctl.chain) this.begin('explicit', 0)
        return
      case 'rollback':
        this.end(tx, 'rolled_back', 'rollback', null)
        if (ctl.chain) this.begin('explicit', 0)
        return
      case 'prepare':
        if (tag === 'ROLLBACK') this.end(tx, 'rolled_back', 'error', null)
        else this.end(tx, 'prepared', 'prepare', ctl.gid)
        return
      case 'commit_prepared':
      case 'rollback_prepared':
        // Finishes a transaction prepared earlier (possibly in another session): said with its GID.
        this.onEnd({
          number: tx.number, outcome: ctl.op === 'commit_prepared' ? 'committed' : 'rolled_back', cause: ctl.op,
          gid: ctl.gid, firstSeq: seq, lastSeq: seq, undone: [],
        })
        return
      case 'savepoint':
        tx.savepoints.push({ name: ctl.name, afterSeq: seq })
        return
      case 'release': {
        const i = lastIndexOf(tx.savepoints, ctl.name)
        if (i >= 0) tx.savepoints.length = i
        return
      }
      case 'rollback_to': {
        const i = lastIndexOf(tx.savepoints, ctl.name)
        if (i < 0) return
        const sp = tx.savepoints[i]!
        tx.savepoints.length = i + 1
        if (seq - 1 > sp.afterSeq) tx.undone.push({ first: sp.afterSeq + 1, last: seq - 1, savepoint: ctl.name })
        tx.failed = false
        return
      }
      case 'begin':
        return
    }
  }

  private end(tx: OpenTransaction, outcome: TransactionEnd['outcome'], cause: string, gid: string | null): void {
    if (this.open === tx) this.open = null
    // An autocommit statement's outcome is final; a chained block that ran nothing has nothing to say.
    if (tx.kind === 'autocommit' || tx.firstSeq === 0) return
    this.onEnd({ number: tx.number, outcome, cause, gid, firstSeq: tx.firstSeq, lastSeq: tx.lastSeq, undone: tx.undone })
  }
}

function lastIndexOf(savepoints: OpenTransaction['savepoints'], name: string): number {
  for (let i = savepoints.length - 1; i >= 0; i--) if (savepoints[i]!.name === name) return i
  return -1
}

const TX_KINDS: Record<string, TxControl['op']> = {
  TRANS_STMT_BEGIN: 'begin', TRANS_STMT_START: 'begin', TRANS_STMT_COMMIT: 'commit', TRANS_STMT_ROLLBACK: 'rollback',
  TRANS_STMT_SAVEPOINT: 'savepoint', TRANS_STMT_RELEASE: 'release', TRANS_STMT_ROLLBACK_TO: 'rollback_to',
  TRANS_STMT_PREPARE: 'prepare', TRANS_STMT_COMMIT_PREPARED: 'commit_prepared', TRANS_STMT_ROLLBACK_PREPARED: 'rollback_prepared',
}

/** The transaction control of a parsed statement, or null for any other statement. */
export function txControlOf(node: Record<string, unknown> | null, tag: string | null): TxControl | null {
  const t = node?.['TransactionStmt'] as { kind?: string; savepoint_name?: string; gid?: string; chain?: boolean } | undefined
  if (t === undefined) return node === null && tag !== null ? txControlOfTag(tag) : null
  const op = TX_KINDS[t.kind ?? '']
  switch (op) {
    case undefined:
      return null
    case 'begin':
      return { op }
    case 'commit':
    case 'rollback':
      return { op, chain: t.chain === true }
    case 'savepoint':
    case 'release':
    case 'rollback_to':
      return { op, name: t.savepoint_name ?? '' }
    default:
      return { op, gid: t.gid ?? '' }
  }
}

/** Without a parse tree (the server split the Query): what the tag alone says. */
function txControlOfTag(tag: string): TxControl | null {
  switch (tag) {
    case 'BEGIN':
    case 'START TRANSACTION':
      return { op: 'begin' }
    case 'COMMIT':
      return { op: 'commit', chain: false }
    default:
      // ROLLBACK may be ROLLBACK TO SAVEPOINT; ReadyForQuery's status settles it.
      return null
  }
}
