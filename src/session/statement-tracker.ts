import type { OutcomeStatus, StatementInfo } from '../audit/types.js'
import { splitStatements, unparsedStatement, type SplitStatement } from '../audit/split.js'
import { nowMicros } from '../util/time.js'
import { capText, cstring, denialOf, rowsOf, statusOf } from './tracked-statement.js'
import type { BackendError, Denial, Expect, ForwardedStatement, ObservedStatement, Open, Portal, Prepared } from './tracked-statement.js'

export { capText, rowsOfTag, type BackendError, type Denial, type ForwardedStatement, type ObservedStatement } from './tracked-statement.js'

/**
 * Pairs what the client sends with what the server answers, and reports one
 * ObservedStatement per statement the server executed (or refused).
 *
 * PostgreSQL answers every frontend message in order, so a FIFO of "what we
 * expect next" is enough: Parse→ParseComplete, Bind→BindComplete,
 * Execute→CommandComplete|EmptyQuery|PortalSuspended, Sync/Query→ReadyForQuery.
 * After an ErrorResponse in the extended protocol the server skips every
 * message up to the next Sync; those entries are dropped, so statements
 * PostgreSQL skipped are never reported as executed.
 *
 * Pure: no I/O; the caller feeds decoded frontend messages and backend
 * message types/bodies, and receives statements through `onStatement`.
 */

const BE = {
  ParseComplete: 0x31, BindComplete: 0x32, CloseComplete: 0x33, CommandComplete: 0x43, DataRow: 0x44,
  ErrorResponse: 0x45, EmptyQuery: 0x49, NoData: 0x6e, ParameterDescription: 0x74, RowDescription: 0x54,
  PortalSuspended: 0x73, ReadyForQuery: 0x5a, FunctionCallResponse: 0x56,
} as const

/** Messages whose body the tracker reads; all others only need their type. */
const IMPLICIT_COMMIT: SplitStatement = unparsedStatement('', 'COMMIT')
const UNKNOWN_STATEMENT: SplitStatement = unparsedStatement('')
const FUNCTION_CALL: SplitStatement = { ...unparsedStatement('', 'FUNCTION CALL'), classes: ['FUNCTION'] }

const NO_NAMES = { parameters: null, preparedName: null, portal: null } as const

export const TRACKER_BODY_TYPES: ReadonlySet<number> = new Set([BE.CommandComplete, BE.ReadyForQuery])

export interface TrackerOptions {
  maxStatementBytes: number
  onStatement: (s: ObservedStatement) => void
  /**
   * Strict durability: called for every statement the client sends for
   * execution, before it is forwarded, with the key its outcome will carry.
   */
  onIntent?: (key: number, statement: ForwardedStatement) => void
  /** A statement given a key will never have an outcome: the server skipped it (an earlier error). */
  onSkipped?: (key: number) => void
}

export class StatementTracker {
  private readonly expect: Expect[] = []
  private head = 0
  private readonly prepared = new Map<string, Prepared>()
  private readonly portals = new Map<string, Portal>()
  private inTransaction = false
  private nextKey = 1

  constructor(private readonly opts: TrackerOptions) {}

  /** Give a statement about to be forwarded its intent key (strict durability only). */
  private intend(open: Open): void {
    if (!this.opts.onIntent) return
    open.base.key = this.nextKey++
    this.opts.onIntent(open.base.key, open.base)
  }

  /** Number of responses still expected (for tests and shutdown). */
  get pending(): number {
    return this.expect.length - this.head
  }

  // ---- frontend -------------------------------------------------------

  /** A simple Query; `denial` when the proxy refused it (a refusal went upstream instead). */
  query(text: string, truncated: boolean, denial: Denial | null = null): void {
    const statements = truncated
      ? [unparsedStatement(text)]
      : splitStatements(text)
    let keyBase = 0
    if (this.opts.onIntent) {
      // Every statement of the string may run: each gets its intent now, in order.
      keyBase = this.nextKey
      const now = nowMicros()
      for (const st of statements) this.intend(this.openStatement('simple', st, truncated, NO_NAMES, now))
    }
    this.push({ kind: 'query', statements, text, truncated, index: 0, current: null, failed: false, denial, keyBase })
    this.startQueryStatement(this.expect[this.expect.length - 1] as Extract<Expect, { kind: 'query' }>, nowMicros())
  }

  parse(name: string, text: string, truncated: boolean, denial: Denial | null = null): void {
    const split: SplitStatement = truncated
      ? unparsedStatement(text)
      : splitStatements(text)[0]!
    const stmt: Prepared = { name, text, truncated, split, denial }
    this.prepared.set(name, stmt)
    this.push({ kind: 'parse', stmt, sentAt: nowMicros() })
  }

  bind(portalName: string, statementName: string, parameters: StatementInfo['parameters']): void {
    const stmt = this.prepared.get(statementName) ?? {
      // Prepared before we saw it (cannot happen through us) or never: the server will refuse the Bind.
      name: statementName, text: '', truncated: false, split: UNKNOWN_STATEMENT, denial: null,
    }
    this.finishSuspended(this.portals.get(portalName))
    const portal: Portal = { name: portalName, stmt, parameters, open: null, suspended: false }
    this.portals.set(portalName, portal)
    this.push({ kind: 'bind', portal, sentAt: nowMicros() })
  }

  execute(portalName: string): void {
    const portal = this.portals.get(portalName) ?? {
      name: portalName,
      stmt: { name: '', text: '', truncated: false, split: UNKNOWN_STATEMENT, denial: null },
      parameters: null,
      open: null,
      suspended: false,
    }
    if (portal.open === null) {
      portal.open = this.openStatement('extended', portal.stmt.split, portal.stmt.truncated, {
        parameters: portal.parameters, preparedName: portal.stmt.name, portal: portal.name,
      })
      this.intend(portal.open)
    }
    const open = portal.open
    portal.suspended = false
    this.push({ kind: 'execute', portal, open })
  }

  functionCall(functionOid: number, parameters: StatementInfo['parameters']): void {
    const open = this.openStatement('function_call', FUNCTION_CALL, false, {
      parameters, preparedName: null, portal: null,
    })
    open.base.text = null
    open.base.functionOid = functionOid
    this.intend(open)
    this.push({ kind: 'function', open })
  }

  describe(target: 'S' | 'P'): void {
    this.push({ kind: 'describe', target })
  }

  close(target: 'S' | 'P', name: string): void {
    if (target === 'S') this.prepared.delete(name)
    else {
      this.finishSuspended(this.portals.get(name))
      this.portals.delete(name)
    }
    this.push({ kind: 'close' })
  }

  sync(): void {
    this.push({ kind: 'sync' })
  }

  // ---- backend --------------------------------------------------------

  /** Feed every backend message type; `body` is required for types in TRACKER_BODY_TYPES and ErrorResponse via `error()`. */
  backend(type: number, body: Buffer | null): void {
    const e = this.peek()
    switch (type) {
      case BE.DataRow:
        if (e?.kind === 'query' && e.current) e.current.rows++
        else if (e?.kind === 'execute') e.open.rows++
        return
      case BE.ParseComplete:
      case BE.BindComplete:
      case BE.CloseComplete:
        if (e && (e.kind === 'parse' || e.kind === 'bind' || e.kind === 'close')) this.shift()
        return
      case BE.ParameterDescription:
        return // Describe of a statement: RowDescription/NoData follows and completes it.
      case BE.RowDescription:
      case BE.NoData:
        if (e?.kind === 'describe') this.shift()
        return
      case BE.CommandComplete:
        this.complete(e, 'ok', body ? cstring(body) : null, null)
        return
      case BE.EmptyQuery:
        this.complete(e, 'ok', null, null)
        return
      case BE.PortalSuspended:
        if (e?.kind === 'execute') {
          // Row limit reached: the statement continues on the next Execute of this portal.
          e.portal.suspended = true
          this.shift()
        }
        return
      case BE.FunctionCallResponse:
        if (e?.kind === 'function') {
          this.emit(e.open, 'ok', null, null, nowMicros())
          this.shift()
        }
        return
      case BE.ReadyForQuery:
        this.readyForQuery(body && body.length > 0 ? body[0]! : 0x49)
        return
      default:
        return
    }
  }

  /** An ErrorResponse from the server (already decoded by the caller). */
  error(serverError: BackendError): void {
    const e = this.peek()
    if (!e) return // asynchronous error (e.g. FATAL on shutdown): not about a statement
    const now = nowMicros()
    const denial = denialOf(e)
    // For a refused statement the server only ran our refusal: record the refusal itself.
    const err = denial ? { code: denial.code, message: `pgwitness: ${denial.reason}` } : serverError
    switch (e.kind) {
      case 'query':
        if (denial) {
          // None of the string ran: every statement of it was refused.
          e.statements.forEach((st, i) => {
            const open = this.openStatement('simple', st, e.truncated, NO_NAMES, e.current?.base.startedAtUs ?? now)
            if (e.keyBase > 0) open.base.key = e.keyBase + i
            this.emit(open, 'denied', null, err, now)
          })
          e.index = e.statements.length - 1
        } else if (e.current) this.emit(e.current, statusOf(err), null, err, now)
        e.current = null
        e.failed = true
        return // the rest of the string is skipped; ReadyForQuery ends it
      case 'execute':
        this.emit(e.open, denial ? 'denied' : statusOf(err), null, err, now)
        this.closePortalStatement(e)
        break
      case 'function':
        this.emit(e.open, statusOf(err), null, err, now)
        break
      case 'parse': {
        // The statement was refused before it could run (e.g. a syntax error): still a statement attempt.
        const open = this.openStatement('extended', e.stmt.split, e.stmt.truncated, { parameters: null, preparedName: e.stmt.name, portal: null }, e.sentAt)
        this.emit(open, denial ? 'denied' : statusOf(err), null, err, now)
        break
      }
      case 'bind': {
        const open = this.openStatement('extended', e.portal.stmt.split, e.portal.stmt.truncated, {
          parameters: e.portal.parameters, preparedName: e.portal.stmt.name, portal: e.portal.name,
        }, e.sentAt)
        this.emit(open, denial ? 'denied' : statusOf(err), null, err, now)
        break
      }
      case 'sync': {
        // The implicit COMMIT at Sync failed (e.g. a deferred constraint): the
        // transaction's statements were rolled back, and that is a recordable outcome.
        const open = this.openStatement('extended', IMPLICIT_COMMIT, false, { parameters: null, preparedName: null, portal: null }, now)
        open.base.text = null
        this.emit(open, denial ? 'denied' : statusOf(err), null, err, now)
        return // ReadyForQuery follows
      }
      default:
        break
    }
    // Extended protocol: the server now ignores everything up to the next Sync.
    this.shift()
    while (this.head < this.expect.length && this.expect[this.head]!.kind !== 'sync') {
      const skipped = this.shift()!
      if ((skipped.kind === 'execute' || skipped.kind === 'function') && skipped.open.base.key > 0) this.opts.onSkipped?.(skipped.open.base.key)
    }
  }

  /** The session is ending: statements sent but never answered end as `unknown`. */
  abandon(): void {
    const now = nowMicros()
    const unknown = new Set<Open>() // pipelined Executes of one portal share one statement
    for (let i = this.head; i < this.expect.length; i++) {
      const e = this.expect[i]!
      if (e.kind === 'query' && e.current) unknown.add(e.current)
      else if (e.kind === 'execute' || e.kind === 'function') unknown.add(e.open)
    }
    for (const open of unknown) this.emit(open, 'unknown', null, null, now)
    for (const p of this.portals.values()) if (!p.open || !unknown.has(p.open)) this.finishSuspended(p)
    this.expect.length = 0
    this.head = 0
  }

  // ---- internals ------------------------------------------------------

  private readyForQuery(status: number): void {
    // Pop up to and including the Query/Sync this answers.
    while (this.head < this.expect.length) {
      const e = this.shift()!
      if (e.kind === 'query') {
        this.skipRest(e)
        break
      }
      if (e.kind === 'sync') break
    }
    this.inTransaction = status !== 0x49 /* I */
    if (!this.inTransaction) {
      // Outside a transaction block every portal is gone.
      for (const p of this.portals.values()) this.finishSuspended(p)
      this.portals.clear()
    }
  }

  /** The statements of a simple Query that never started (after an error): the server skipped them. */
  private skipRest(e: Extract<Expect, { kind: 'query' }>): void {
    if (e.keyBase === 0) return
    for (let i = e.failed ? e.index + 1 : e.index; i < e.statements.length; i++) this.opts.onSkipped?.(e.keyBase + i)
  }

  private complete(e: Expect | undefined, status: OutcomeStatus, tag: string | null, err: BackendError | null): void {
    const now = nowMicros()
    if (e?.kind === 'query') {
      if (e.current) this.emit(e.current, status, tag, err, now)
      this.noteTransaction(tag)
      e.index++
      this.startQueryStatement(e, now)
    } else if (e?.kind === 'execute') {
      this.emit(e.open, status, tag, err, now)
      this.closePortalStatement(e)
      this.noteTransaction(tag)
      this.shift()
    }
  }

  private startQueryStatement(e: Extract<Expect, { kind: 'query' }>, now: number): void {
    const s = e.statements[e.index]
    e.current = s && !e.failed
      ? this.openStatement('simple', s, e.truncated, NO_NAMES, now)
      : null
    if (e.current && e.keyBase > 0) e.current.base.key = e.keyBase + e.index
  }

  private noteTransaction(tag: string | null): void {
    if (tag === null) return
    if (tag === 'BEGIN' || tag === 'START TRANSACTION') this.inTransaction = true
    else if (tag === 'COMMIT' || tag === 'ROLLBACK' || tag === 'PREPARE TRANSACTION') this.inTransaction = false
  }

  private openStatement(
    protocol: ObservedStatement['protocol'],
    split: SplitStatement,
    truncated: boolean,
    names: { parameters: StatementInfo['parameters']; preparedName: string | null; portal: string | null },
    now: number = nowMicros(),
  ): Open {
    const { text, truncated: cut } = capText(split.text, this.opts.maxStatementBytes)
    return {
      rows: 0,
      base: {
        key: 0,
        protocol,
        text,
        textTruncated: truncated || cut,
        parameters: names.parameters,
        preparedName: names.preparedName,
        portal: names.portal,
        functionOid: null,
        command: split.command,
        classes: split.classes,
        objects: split.objects as StatementInfo['objects'],
        node: split.node,
        inTransaction: this.inTransaction,
        startedAtUs: now,
      },
    }
  }

  private closePortalStatement(e: Extract<Expect, { kind: 'execute' }>): void {
    if (e.portal.open === e.open) e.portal.open = null
    e.portal.suspended = false
  }

  /** A portal destroyed while suspended (Close, re-Bind, end of transaction): its statement ends here. */
  private finishSuspended(p: Portal | undefined): void {
    if (p?.open && p.suspended) {
      this.emit(p.open, 'ok', null, null, nowMicros())
      p.open = null
      p.suspended = false
    }
  }

  private emit(open: Open, status: OutcomeStatus, tag: string | null, err: BackendError | null, now: number): void {
    this.opts.onStatement({
      ...open.base,
      status,
      commandTag: tag,
      rows: rowsOf(tag, open.rows, status),
      sqlstate: err?.code ?? null,
      message: err?.message ?? null,
      durationUs: status === 'unknown' ? null : now - open.base.startedAtUs,
    })
  }

  private push(e: Expect): void {
    this.expect.push(e)
  }

  private peek(): Expect | undefined {
    return this.expect[this.head]
  }

  private shift(): Expect | undefined {
    const e = this.expect[this.head]
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

