import type { OutcomeStatus, StatementInfo } from '../evidence/types.js'
import { splitSent, unparsedStatement, withOrigin, type SplitStatement } from '../classify/split.js'
import { nowMicros } from '../util/time.js'
import { ProtocolState } from './protocol-state.js'
import { reconcile } from './query-results.js'
import { TransactionTracker, txControlOf, type TransactionEnd } from './transactions.js'
import { cstring, statusOf } from './tracked-statement.js'
import {
  denialError, dropReread, finished, FUNCTION_CALL, NO_NAMES, parsedSplit, readBatchAgain, refused, statementBase, unanswered, UNKNOWN_STATEMENT, withPolicies,
  type Entry, type Finished, type Names,
} from './tracker-entries.js'
import type { BackendError, ForwardedStatement, ObservedStatement, Prepared, RereadableParameters, SentText, StatementBase } from './tracked-statement.js'
import { BackendType } from '../protocol/backend-types.js'

export { capText, rowsOfTag, type BackendError, type Denial, type ForwardedStatement, type ObservedStatement, type RereadableParameters, type RereadableText, type SentText } from './tracked-statement.js'
export type { TransactionEnd } from './transactions.js'

/**
 * Pairs what the client sends with what the server answers, and reports one
 * ObservedStatement per statement execution the server ran (or refused), in
 * the server's order, plus a TransactionEnd for every implicit or explicit
 * transaction.
 *
 * PostgreSQL answers every frontend message in order, so a FIFO of what was
 * sent is enough to know what each answer is about. Names (prepared
 * statements, portals) are resolved when the server answers, against what
 * the server has accepted (ProtocolState), never against what the client
 * asked for. After an ErrorResponse in the extended protocol the server
 * skips every message up to the next Sync; those are dropped, so statements
 * PostgreSQL skipped are never reported as executed.
 *
 * Pure: no I/O; the caller feeds decoded frontend messages and backend
 * message types/bodies.
 */

const BE = BackendType

/** Backend messages whose body the tracker reads (ErrorResponse goes to `error()` decoded). */
export const TRACKER_BODY_TYPES: ReadonlySet<number> = new Set([BE.CommandComplete, BE.ReadyForQuery])

export interface TrackerOptions {
  maxStatementBytes: number
  onStatement: (s: ObservedStatement) => void
  onTransactionEnd?: (e: TransactionEnd) => void
  /**
   * Strict durability: called for every statement the client sends for
   * execution, before it is forwarded, with the key its outcome will carry.
   */
  onIntent?: (key: number, statement: ForwardedStatement) => void
  /** A statement given a key will never have an outcome: the server skipped it (an earlier error). */
  onSkipped?: (key: number) => void
  /** statement.seq numbers, shared with whoever else records statements of the session (default: 1, 2, …). */
  nextSeq?: () => number
  /** Names the session's client_encoding / standard_conforming_strings now in force (see readNextBatch). */
  textSettings?: () => string
}

export class StatementTracker {
  private readonly expect: Entry[] = []
  private head = 0
  private readonly state = new ProtocolState()
  private readonly tx: TransactionTracker
  private nextKey = 1
  private seq = 0
  private readonly nextSeq: () => number
  /**
   * The last extended-protocol statement run outside any transaction block,
   * held until the next statement or ReadyForQuery says whether it was alone
   * in its implicit transaction (autocommit, final) or shared it.
   */
  private held: Finished | null = null
  /** Entries still holding a RereadableText (0 on the common path: nothing to look at). */
  private rereadable = 0

  constructor(private readonly opts: TrackerOptions) {
    this.tx = new TransactionTracker((e) => opts.onTransactionEnd?.(e))
    this.nextSeq = opts.nextSeq ?? (() => ++this.seq)
  }

  /** Number of answers still expected (for the relay's drain and shutdown). */
  get pending(): number {
    return this.expect.length - this.head
  }

  // ---- frontend -------------------------------------------------------

  /** A simple Query; `denial` when the proxy refused it (a refusal went upstream instead). */
  /**
   * A simple Query; `sent.denial` when the proxy refused it (a refusal went
   * upstream instead); `sent.reread` when how the server reads its bytes
   * depends on session settings that a statement still in flight may change.
   */
  query(text: string, truncated: boolean, sent: SentText = {}): void {
    const { denial = null, origin, reread = null, policies = null, replication } = sent
    const described = replication ? withOrigin([replication], origin) : truncated ? withOrigin([unparsedStatement(text)], origin) : splitSent(text, origin)
    const statements = withPolicies(described, policies)
    const now = nowMicros()
    let keyBase = 0
    if (this.opts.onIntent) {
      // Every statement of the string may run: each gets its intent now, in order.
      keyBase = this.nextKey
      for (const st of statements) this.intend(this.base('simple', st, truncated, NO_NAMES, now, 0))
    }
    const intents = keyBase > 0 ? statements.length : 0
    this.push({
      kind: 'query', text, truncated, origin: origin ?? null, statements, denial, keyBase, intents, results: [], rows: 0, startedAt: now,
      reread: this.keep(reread), policies, merged: replication !== undefined,
    })
  }

  parse(name: string, text: string, truncated: boolean, sent: SentText = {}): void {
    const { denial = null, origin, reread = null } = sent
    const policy = sent.policies?.[0] ?? null
    const split = parsedSplit(text, truncated, origin, policy)
    const stmt: Prepared = { name, text: split.text, truncated, split, denial }
    this.state.sentParse(stmt)
    this.push({ kind: 'parse', stmt, sentAt: nowMicros(), reread: this.keep(reread), policy })
  }

  bind(portal: string, statement: string, parameters: StatementInfo['parameters'], reread: RereadableParameters | null = null): void {
    this.state.sentBind(portal, statement, parameters)
    this.push({ kind: 'bind', portal, statement, parameters, sentAt: nowMicros(), reread: this.keep(reread) })
  }

  execute(portal: string): void {
    const now = nowMicros()
    let key = 0
    if (this.opts.onIntent) {
      const p = this.state.predictedPortal(portal)
      key = this.intend(this.executionBase(portal, p?.stmt ?? null, p?.parameters ?? null, now, 0))
    }
    this.push({ kind: 'execute', portal, key, sentAt: now, rows: 0 })
  }

  functionCall(functionOid: number, parameters: StatementInfo['parameters'], sent: Pick<SentText, 'denial' | 'policies'> = {}): void {
    const base = this.base('function_call', FUNCTION_CALL, false, { parameters, preparedName: null, portal: null }, nowMicros(), 0)
    base.text = null
    base.functionOid = functionOid
    base.policy = sent.policies?.[0] ?? null
    if (this.opts.onIntent) this.intend(base)
    this.push({ kind: 'function', base, rows: 0, denial: sent.denial ?? null })
  }

  describe(): void {
    this.push({ kind: 'describe' })
  }

  close(target: 'S' | 'P', name: string): void {
    this.state.sentClose(target, name)
    this.push({ kind: 'close', target, name })
  }

  sync(): void {
    this.push({ kind: 'sync' })
  }

  // ---- backend --------------------------------------------------------

  /** `n` DataRows of the current result (the relay's framer counts runs of them: MessageStream's run type). */
  dataRows(n: number): void {
    const e = this.expect[this.head]
    if (e !== undefined && (e.kind === 'query' || e.kind === 'execute' || e.kind === 'function')) e.rows += n
  }

  /** Feed every backend message type; `body` is required for types in TRACKER_BODY_TYPES and ErrorResponse via `error()`. */
  backend(type: number, body: Buffer | null): void {
    const e = this.expect[this.head]
    switch (type) {
      case BE.DataRow:
        this.dataRows(1)
        return
      case BE.ParseComplete:
        if (e?.kind === 'parse') {
          this.state.parsed(e.stmt)
          this.shift()
        }
        return
      case BE.BindComplete:
        if (e?.kind === 'bind') {
          this.state.bound(e.portal, e.statement, e.parameters)
          this.shift()
        }
        return
      case BE.CloseComplete:
        if (e?.kind === 'close') {
          this.state.closed(e.target, e.name)
          this.shift()
        }
        return
      case BE.RowDescription:
      case BE.NoData:
        if (e?.kind === 'describe') this.shift()
        return
      case BE.CommandComplete:
      case BE.EmptyQueryResponse:
      case BE.PortalSuspended: {
        const tag = type === BE.CommandComplete && body ? cstring(body) : null
        if (e?.kind === 'query') this.queryResult(e, tag, null, type === BE.EmptyQueryResponse)
        else if (e?.kind === 'execute') {
          this.finishExecute(e, 'ok', tag, type === BE.PortalSuspended, null)
          this.shift()
        }
        return
      }
      case BE.FunctionCallResponse:
        if (e?.kind === 'function') {
          this.deliver(finished(e.base, 'ok', null, e.rows, null, null))
          this.shift()
        }
        return
      case BE.ReadyForQuery:
        this.readyForQuery(body && body.length > 0 ? body[0]! : 0x49)
        return
      default:
        return // ParameterDescription, notices, COPY, ...: nothing about the statement's identity or end
    }
  }

  /** An ErrorResponse from the server (already decoded by the caller). */
  error(serverError: BackendError): void {
    const e = this.expect[this.head]
    if (!e) return // asynchronous error (e.g. FATAL on shutdown): not about a statement
    switch (e.kind) {
      case 'query':
        this.queryResult(e, null, serverError, false)
        return // the rest of the string is skipped; ReadyForQuery ends it
      case 'execute':
        this.finishExecute(e, statusOf(serverError), null, false, serverError)
        break
      case 'function':
        this.deliver(e.denial ? refused(e.base, e.denial, serverError) : finished(e.base, statusOf(serverError), null, e.rows, serverError, null))
        break
      case 'parse': {
        // Refused before it could run (a syntax error, a name in use): still a statement attempt.
        const base = this.base('extended', e.stmt.split, e.stmt.truncated, { parameters: null, preparedName: e.stmt.name, portal: null }, e.sentAt, 0)
        this.deliver(refused(base, e.stmt.denial, serverError))
        break
      }
      case 'bind': {
        // The statement the server has under that name (if any) is what the client tried to run.
        const stmt = this.state.statement(e.statement)
        const base = this.executionBase(e.portal, stmt ?? null, e.parameters, e.sentAt, 0)
        base.preparedName = e.statement
        this.deliver(refused(base, stmt?.denial ?? null, serverError))
        break
      }
      case 'sync':
        // The implicit COMMIT at Sync failed (e.g. a deferred constraint): the transaction rolled back.
        this.releaseHeld(true)
        this.tx.commitAtSyncFailed()
        return // ReadyForQuery follows
      default:
        break
    }
    // Extended protocol: the server now ignores everything up to the next Sync.
    this.shift()
    while (this.head < this.expect.length && this.expect[this.head]!.kind !== 'sync') this.skipped(this.shift()!)
  }

  /** The session is ending: statements sent but never answered end as `unknown`. */
  abandon(): void {
    const now = nowMicros()
    const inFlight = this.pending > 0
    for (let i = this.head; i < this.expect.length; i++) {
      const e = this.expect[i]!
      if (e.kind === 'query') {
        const current = e.statements[e.results.length]
        const failed = e.results.length > 0 && e.results[e.results.length - 1]!.error !== null
        this.finishQuery(e, false)
        if (current && !failed && e.denial === null) {
          const key = e.results.length < e.intents ? e.keyBase + e.results.length : 0
          this.record(unanswered(this.base('simple', current, e.truncated, NO_NAMES, e.startedAt, key), now), true)
        }
      } else if (e.kind === 'execute') {
        const p = this.state.predictedPortal(e.portal)
        this.deliver(unanswered(this.executionBase(e.portal, p?.stmt ?? null, p?.parameters ?? null, e.sentAt, e.key), now))
      } else if (e.kind === 'function') {
        this.deliver(unanswered(e.base, now))
      }
    }
    this.expect.length = 0
    this.head = 0
    this.rereadable = 0
    this.releaseHeld(true)
    this.tx.sessionEnd(inFlight)
  }

  // ---- internals ------------------------------------------------------

  private intend(base: StatementBase): number {
    base.key = this.nextKey++
    this.opts.onIntent!(base.key, base)
    return base.key
  }

  private queryResult(e: Extract<Entry, { kind: 'query' }>, tag: string | null, error: BackendError | null, empty: boolean): void {
    const now = nowMicros()
    const first = e.merged ? e.results[0] : undefined
    if (first) {
      // One more result of the same replication command: it ends when the last one does.
      first.tag = tag ?? first.tag
      first.error ??= error
      first.rows += e.rows
      first.endedAtUs = now
      e.rows = 0
      return
    }
    e.results.push({ tag, error, empty, rows: e.rows, startedAtUs: e.startedAt, endedAtUs: now })
    e.rows = 0
    e.startedAt = now
  }

  private readyForQuery(status: number): void {
    // Pop up to and including the Query/Sync this answers.
    while (this.head < this.expect.length) {
      const e = this.shift()!
      if (e.kind === 'query') {
        this.finishQuery(e)
        break
      }
      if (e.kind === 'sync') break
    }
    this.releaseHeld(false)
    this.tx.ready(status)
    if (status === 0x49 /* I */) this.state.transactionEnded()
    if (this.pending === 0) this.state.settled()
    else if (this.rereadable > 0) this.readNextBatch()
  }

  /**
   * The server reads the next batch (up to its Sync, or one Query) only now,
   * under the settings the batch just answered left behind: PostgreSQL
   * reports a changed client_encoding or standard_conforming_strings in
   * ParameterStatus just before this ReadyForQuery. Texts of that batch the
   * client pipelined earlier were read under older settings: read them again.
   * (A change made inside a batch reaches its later Parses before the proxy
   * can know of it: docs/security.md.)
   */
  private readNextBatch(): void {
    this.rereadable -= readBatchAgain(this.expect, this.head, this.rereadable, this.opts.textSettings?.())
  }

  private keep<T>(reread: T | null): T | null {
    if (reread === null || !this.opts.textSettings) return null
    this.rereadable++
    return reread
  }

  /** A Query's results are all in: record its statements as the server ran them. */
  private finishQuery(e: Extract<Entry, { kind: 'query' }>, complete = true): void {
    // Statements of an unsynced pipeline before it share the Query's implicit transaction.
    this.releaseHeld(true)
    const n = e.results.length
    if (e.denial) {
      // None of the string ran: every statement of it was refused.
      const err = denialError(e.denial)
      const at = n > 0 ? e.results[0]!.endedAtUs : nowMicros()
      e.statements.forEach((st, i) => {
        const base = this.base('simple', st, e.truncated, NO_NAMES, at, i < e.intents ? e.keyBase + i : 0)
        this.record(finished(base, 'denied', null, 0, err, null, at), e.statements.length > 1)
      })
    } else {
      // Text that is not an exact rendering of the bytes sent cannot be trusted to split as the server did.
      const described = reconcile(e.statements, e.results, e.text, !e.truncated && !e.origin?.raw, complete)
      const shared = e.statements.length > 1 || n > 1
      for (let i = 0; i < n; i++) {
        const r = e.results[i]!
        const d = described[i]!
        const key = i < e.intents ? e.keyBase + i : 0
        const base = this.base('simple', d.split, e.truncated, NO_NAMES, r.startedAtUs, key)
        if (d.index < 0) {
          base.split = 'server'
          base.textOrigin = e.origin
        }
        const status = r.error ? statusOf(r.error) : 'ok'
        if (status === 'ok') this.sqlEffects(d.split)
        this.record(finished(base, status, r.tag, r.rows, r.error, txControlOf(d.split.node, r.tag), r.endedAtUs), shared)
      }
      for (let i = n; i < e.intents; i++) this.opts.onSkipped?.(e.keyBase + i)
    }
    this.state.queryRan()
  }

  private finishExecute(e: Extract<Entry, { kind: 'execute' }>, status: OutcomeStatus, tag: string | null, suspended: boolean, err: BackendError | null): void {
    const portal = this.state.portal(e.portal)
    const stmt = portal?.stmt ?? null
    const base = this.executionBase(e.portal, stmt, portal?.parameters ?? null, e.sentAt, e.key)
    const f = err !== null && stmt?.denial ? refused(base, stmt.denial, err) : finished(base, status, tag, e.rows, err, txControlOf(stmt?.split.node ?? null, tag))
    f.suspended = suspended
    if (portal) {
      portal.executions++
      portal.rows += f.rows ?? 0
      if (!suspended && portal.executions > 1) f.portalRows = portal.rows
    }
    if (status === 'ok' && stmt) this.sqlEffects(stmt.split)
    this.deliver(f)
  }

  /**
   * An extended-protocol statement (or function call) finished. Outside a
   * transaction block it is held until it is known whether it was alone in
   * its implicit transaction: a pipeline's statements commit at Sync.
   */
  private deliver(f: Finished): void {
    this.releaseHeld(true)
    if (this.tx.isOpen || f.ctl?.op === 'begin') this.record(f, true)
    else this.held = f
  }

  private releaseHeld(shared: boolean): void {
    const h = this.held
    if (h === null) return
    this.held = null
    this.record(h, shared)
  }

  /** Give a finished statement its seq and transaction, and report it. */
  private record(f: Finished, shared: boolean): void {
    const seq = this.nextSeq()
    const inTransaction = this.tx.inExplicit
    const transaction = this.tx.statement(seq, f.ctl, f.status === 'ok', f.tag, shared)
    const b = f.base
    this.opts.onStatement({
      key: b.key, seq, protocol: b.protocol, text: b.text, textTruncated: b.textTruncated, parameters: b.parameters,
      preparedName: b.preparedName, portal: b.portal, functionOid: b.functionOid, command: b.command,
      classes: b.classes, objects: b.objects, node: b.node, split: b.split, governedSettingChanged: b.governedSettingChanged,
      textOrigin: b.textOrigin, policy: b.policy, inTransaction, transaction,
      status: f.status, commandTag: f.tag, rows: f.rows, suspended: f.suspended, portalRows: f.portalRows,
      sqlstate: f.err?.code ?? null, message: f.err?.message ?? null, startedAtUs: b.startedAtUs,
      durationUs: f.status === 'unknown' ? null : f.endedAt - b.startedAtUs,
    })
  }

  /** What SQL statements do to the protocol-level names (DEALLOCATE, DISCARD ALL, PREPARE, CLOSE). */
  private sqlEffects(split: SplitStatement): void {
    const node = split.node
    if (node === null) return
    const dealloc = node['DeallocateStmt'] as { name?: string; isall?: boolean } | undefined
    if (dealloc) return this.state.deallocated(dealloc.isall || dealloc.name === undefined ? null : dealloc.name)
    const discard = node['DiscardStmt'] as { target?: string } | undefined
    if (discard?.target === 'DISCARD_ALL') return this.state.deallocated(null, true)
    const prepare = node['PrepareStmt'] as { name?: string } | undefined
    if (prepare?.name) return this.state.parsed({ name: prepare.name, text: split.text, truncated: false, split: unparsedStatement(split.text, 'EXECUTE'), denial: null })
    const close = node['ClosePortalStmt'] as { portalname?: string } | undefined
    if (close) this.state.closedByName(close.portalname ?? null)
  }

  private skipped(e: Entry): void {
    const skip = this.opts.onSkipped
    if (skip === undefined) return
    if (e.kind === 'execute' && e.key > 0) skip(e.key)
    else if (e.kind === 'function' && e.base.key > 0) skip(e.base.key)
    else if (e.kind === 'query') for (let i = 0; i < e.intents; i++) skip(e.keyBase + i)
  }

  private executionBase(portal: string, stmt: Prepared | null, parameters: StatementInfo['parameters'], at: number, key: number): StatementBase {
    const base = this.base('extended', stmt?.split ?? UNKNOWN_STATEMENT, stmt?.truncated ?? false, {
      parameters, preparedName: stmt?.name ?? null, portal,
    }, at, key)
    if (stmt === null) base.text = null // no such portal: the server refuses the Execute
    return base
  }

  private base(protocol: StatementBase['protocol'], split: SplitStatement, truncated: boolean, names: Names, startedAtUs: number, key: number): StatementBase {
    return statementBase(protocol, split, truncated, names, startedAtUs, key, this.opts.maxStatementBytes)
  }

  private push(e: Entry): void {
    this.expect.push(e)
  }

  private shift(): Entry | undefined {
    const e = this.expect[this.head]
    if (e !== undefined && dropReread(e)) this.rereadable--
    this.head++
    // Compact occasionally instead of Array.shift() on every response.
    if (this.head === this.expect.length) {
      this.expect.length = 0
      this.head = 0
    } else if (this.head > 1024) {
      this.expect.splice(0, this.head)
      this.head = 0
    }
    return e
  }
}

