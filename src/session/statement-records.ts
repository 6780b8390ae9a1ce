/**
 * The statement records of one governed session, and, under strict
 * durability, their intents (see audit/intent-journal.ts): every statement
 * gets an intent — its record with outcome unknown — before it is forwarded,
 * and the relay holds the client's bytes until the journal has them on disk.
 * The outcome's record carries the intent's id, so recovery after a crash
 * can tell which forwarded statements were recorded.
 */
import { intentRecord, type IntentJournal, type IntentSession, type StatementIntent } from '../ledger/intent-journal.js'
import { shareMembers, type OwnSerializer, type SharedMembers } from '../ledger/chain.js'
import { statementOwnMemberTexts } from '../ledger/statement-members.js'
import type { AuditSink } from '../ledger/log.js'
import { sharedSessionMembers, statementOwnMembers, statementRecord, transactionEndOwnMembers, transactionEndRecord, unseenStatementOwnMembers, type SessionContext } from '../evidence/records.js'
import type { AuditRecordBody, StatementPolicyInfo, StatementRecord, Unchained } from '../evidence/types.js'
import type { ProxyMetrics } from '../metrics/registry.js'
import { SQLSTATE } from '../protocol/errors.js'
import { rfc3339Micros } from '../util/time.js'
import type { RelayEvents } from './relay.js'
import type { ObservedStatement, TransactionEnd } from './statement-tracker.js'

type StatementOwn = Parameters<typeof statementOwnMemberTexts>[0]

/** outcome.message of a statement forwarded whose end the proxy never saw. */
const OUTCOME_UNSEEN = 'pgwitness did not see this statement end (the session or the proxy stopped first); it was forwarded to the server at outcome.started_at'

/** statement.transaction of a statement whose outcome was never seen (a recovered intent). */
const UNOBSERVED_TRANSACTION = { number: 0, kind: 'unknown' } as const

export class SessionStatements {
  /** Statements recorded so far (statement.seq of the last). */
  count = 0
  /** Statements forwarded (or about to be) whose outcome is not recorded yet, by intent key (strict durability; made on the first). */
  private intents: Map<number, StatementIntent> | null = null
  /** Intents of the client chunk being decoded, not yet durable. */
  private fresh: StatementIntent[] = []
  /** Intents being made durable; their chunk is forwarded once they are (null: none waiting). */
  private gated: StatementIntent[] | null = null
  /** The session's shared record members for its intents, serialized on the first. */
  private intentSession: IntentSession | null = null
  /** The same members, serialized once for the chain (see shared(); undefined: not yet). */
  private sharedMembers: SharedMembers | null | undefined = undefined

  constructor(
    private readonly context: SessionContext,
    private readonly audit: AuditSink,
    private readonly metrics: ProxyMetrics,
    /** null: audit.enabled false (benchmarks of the bare relay): statements are counted, not recorded. */
    private readonly recording: boolean,
    /** Strict durability: the journal; null otherwise. */
    private readonly journal: IntentJournal | null,
    /** chain.seq of the session's session.start: the outcomes of its statements come after it. */
    private readonly startSeq: number,
  ) {}

  /** The next statement.seq (the tracker's statements and the ones recorded here share one sequence). */
  nextSeq(): number {
    return ++this.count
  }

  private countRuleHits(p: StatementPolicyInfo): void {
    if (p.denied_by) this.metrics.statementRule(p.denied_by.rule, p.denied_by.statement_rule, true)
    for (const h of p.would_deny ?? []) this.metrics.statementRule(h.rule, h.statement_rule, false)
  }

  /** A statement's outcome, from the relay. */
  record(s: ObservedStatement): void {
    this.metrics.statement(s.classes, s.status, s.durationUs)
    if (s.policy !== null) this.countRuleHits(s.policy)
    if (!this.recording) return
    const shared = this.shared()
    const rec = shared === null ? statementRecord(this.context, s) : statementOwnMembers(s)
    const intent = s.key > 0 ? this.intents?.get(s.key) : undefined
    if (intent !== undefined) {
      this.intents!.delete(s.key)
      rec.id = intent.id
    }
    const seq = shared === null ? this.audit.append(rec as Unchained<StatementRecord>) : this.appendOwn(rec as StatementOwn, shared, statementOwnMemberTexts)
    if (intent !== undefined) this.journal!.resolve(intent.id, seq)
  }

  /**
   * The session's members, serialized once for the chain, on its first
   * record after session.start (a session that never runs a statement does
   * not hold them); null when they are not I-JSON: its records then take
   * the full path, which sanitizes.
   */
  private shared(): SharedMembers | null {
    if (this.sharedMembers === undefined) this.sharedMembers = shareMembers(sharedSessionMembers(this.context) as Record<string, unknown>)
    return this.sharedMembers
  }

  private appendOwn<T extends Readonly<Record<string, unknown>>>(own: T, shared: SharedMembers, serializeOwn?: OwnSerializer<T>): number {
    return this.audit.appendShared ? this.audit.appendShared(own, shared, serializeOwn) : this.audit.append({ ...shared.object, ...own } as unknown as AuditRecordBody)
  }

  /** A transaction ended, from the relay. */
  transactionEnd(e: TransactionEnd): void {
    if (!this.recording) return
    const shared = this.shared()
    if (shared === null) this.audit.append(transactionEndRecord(this.context, e))
    else this.appendOwn(transactionEndOwnMembers(e), shared)
  }

  /** The relay events of strict durability (none without a journal). */
  relayEvents(): Pick<RelayEvents, 'intent' | 'skipped' | 'beforeForward'> {
    const journal = this.journal
    if (journal === null || !this.recording) return {}
    return {
      intent: (key, s) => {
        // Its place in the session is not known before the server answers: seq and transaction are predictions.
        const intents = (this.intents ??= new Map())
        const rec = unseenStatementOwnMembers(s, this.count + intents.size + 1, UNOBSERVED_TRANSACTION, OUTCOME_UNSEEN)
        this.intentSession ??= { key: this.context.session.id, json: JSON.stringify(sharedSessionMembers(this.context)) }
        const intent: StatementIntent = { id: rec.id, afterSeq: this.startSeq, session: this.intentSession, record: rec }
        intents.set(key, intent)
        this.fresh.push(intent)
      },
      skipped: (key) => {
        const intent = this.intents?.get(key)
        if (intent === undefined) return
        this.intents!.delete(key)
        journal.discard(intent.id)
      },
      beforeForward: () => {
        if (this.fresh.length === 0) return null
        const batch = this.fresh
        this.fresh = []
        this.gated = batch
        return journal.commit(batch).then(
          () => {
            if (this.gated === batch) this.gated = null
          },
          (err: Error) => {
            if (this.gated === batch) this.gated = null
            // Not forwarded: refused, and recorded so (the record waits in memory until the log is writable).
            for (const i of batch) this.refuse(i, err.message)
            throw new Error(`the statement intent journal cannot be written (${err.message})`)
          },
        )
      },
    }
  }

  /**
   * The session ended: intents still waiting to be made durable were never
   * forwarded (the relay forwards nothing after its end) and are forgotten;
   * statements forwarded whose end was never seen are recorded with outcome
   * unknown.
   */
  end(): void {
    if (this.gated !== null) {
      for (const i of this.gated) this.forget(i)
      this.gated = null
    }
    if (this.intents === null) return
    for (const intent of this.intents.values()) {
      this.count++
      const rec = intentRecord(intent) as Unchained<StatementRecord>
      this.journal!.resolve(intent.id, this.audit.append({ ...rec, time: rfc3339Micros(), statement: { ...rec.statement, seq: this.count } }))
    }
    this.intents.clear()
  }

  /** An intent whose statement will never reach the server. */
  private forget(intent: StatementIntent): void {
    for (const [k, v] of this.intents ?? []) if (v === intent) this.intents!.delete(k)
    this.journal!.discard(intent.id)
  }

  private refuse(intent: StatementIntent, why: string): void {
    this.forget(intent)
    const rec = intentRecord(intent) as Unchained<StatementRecord>
    this.count++
    this.audit.append({
      ...rec,
      statement: { ...rec.statement, seq: this.count },
      outcome: {
        ...rec.outcome, status: 'denied', sqlstate: SQLSTATE.ioError, duration_us: 0,
        message: `pgwitness: the statement intent journal cannot be written (${why}); statements are refused rather than run unaudited`,
      },
    })
  }
}
