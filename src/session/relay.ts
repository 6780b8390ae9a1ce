import type { Duplex } from 'node:stream'
import type { SessionEndReason } from '../evidence/types.js'
import type { ParameterPolicy } from '../evidence/parameters.js'
import type { GovernedSettingsMode } from '../config/types.js'
import { errorResponseFromPgError } from '../protocol/backend-messages.js'
import { decodeErrorFields } from '../protocol/backend-fields.js'
import { PgError, ProtocolViolation, SQLSTATE } from '../protocol/errors.js'
import { BodyMode, MessageStream, type MessageHandler } from '../protocol/message-stream.js'
import { StatementTracker, type ForwardedStatement, type ObservedStatement, type TransactionEnd } from './statement-tracker.js'
import { AuditUnavailable, FrontendObserver } from './frontend-observer.js'
import { ClientTextSettings } from './client-text-settings.js'
import type { SessionStatementRules } from '../policy/statement-rules.js'
import type { ReplicationMode } from '../config/types.js'
import type { StreamedCounts } from '../evidence/types.js'
import { StreamCounter } from '../replication/stream-counts.js'
import { BackendType } from '../protocol/backend-types.js'

export { AuditUnavailable, denialStatement } from './frontend-observer.js'


export interface RelayOptions {
  maxMessageBytes: number
  maxStatementBytes: number
  maxParameterBytes: number
  parameters: ParameterPolicy
  /** session.governed_settings: `refuse` replaces statements changing application_name/pgwitness.* with a refusal. */
  governedSettings: GovernedSettingsMode
  /** audit.unparseable */
  unparseable: 'forward' | 'refuse'
  /** The upstream's ParameterStatus values at connect (client_encoding, standard_conforming_strings...). */
  serverParameters?: Iterable<readonly [string, string]>
  /** The admitting policy rule's statement rules, bound to the session's identity; null: none. */
  statementRules?: SessionStatementRules | null
  /** A replication connection: replication commands are recognised and recorded as such (src/replication). */
  replication?: ReplicationMode | null
}

export interface RelayEvents {
  statement(s: ObservedStatement): void
  /** An implicit or explicit transaction ended. */
  transactionEnd?(e: TransactionEnd): void
  /** statement.seq numbers of the session (default: the tracker counts by itself). */
  nextSeq?(): number
  /** Strict durability: a statement is about to be forwarded (see StatementTracker onIntent). */
  intent?(key: number, s: ForwardedStatement): void
  /** A statement given an intent will not run (the server skipped it). */
  skipped?(key: number): void
  /**
   * After a client chunk is decoded, before its bytes go upstream: a promise
   * to wait for (the intents of the chunk's statements being made durable),
   * or null to forward at once. A rejection ends the session (fail closed).
   */
  beforeForward?(): Promise<void> | null
  /** Why statements cannot be audited right now (the audit log is not writable), or null. */
  auditUnavailable?(): string | null
  /** Called exactly once, after both sockets are closed or being closed. */
  end(reason: SessionEndReason, detail: string | null): void
}

/** Client bytes held while waiting for intents to be durable before the client is paused. */
const HELD_LIMIT = 256 * 1024


const BE = BackendType


/** Terminate message, sent upstream when the client vanishes without one. */
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4])

/**
 * Relays bytes between an authenticated client and its upstream connection,
 * unchanged, while observing both directions: frontend messages are decoded
 * (streaming for large ones) and backend messages framed, so that the
 * StatementTracker can report one outcome per statement. Back-pressure is
 * end to end: a client that stops reading pauses the upstream, and a slow
 * upstream pauses the client.
 */
export class Relay {
  bytesIn = 0
  bytesOut = 0
  /** CopyData relayed each way (both directions counted from message headers). */
  private readonly copyData = new StreamCounter()
  private readonly tracker: StatementTracker
  /** Decodes and observes what the client sends, and frames what goes upstream. */
  private readonly frontend: FrontendObserver
  private readonly fromClient: MessageStream
  private readonly fromServer: MessageStream
  private ended = false
  /** Waiting for beforeForward(): client chunks that arrive meanwhile wait here, in order. */
  private gated = false
  private held: Buffer[] = []
  private heldBytes = 0
  /** The client was paused because too much arrived while gated. */
  private heldPaused = false
  /**
   * While a server chunk is framed: the statements and transactions it ends,
   * in order. They are recorded right after the chunk is relayed, so the
   * client has the server's answer before its records are built (the same
   * records, in the same order, in the same event-loop turn).
   */
  private holdingEnds = false
  private readonly heldEnds: Array<ObservedStatement | TransactionEnd> = []

  constructor(
    private readonly client: Duplex,
    private readonly upstream: Duplex,
    private readonly opts: RelayOptions,
    private readonly events: RelayEvents,
  ) {
    this.tracker = new StatementTracker({
      maxStatementBytes: opts.maxStatementBytes,
      onStatement: (s) => (this.holdingEnds ? this.heldEnds.push(s) : this.record(s)),
      onTransactionEnd: (e) => (this.holdingEnds ? this.heldEnds.push(e) : this.record(e)),
      ...(events.nextSeq ? { nextSeq: () => events.nextSeq!() } : {}),
      textSettings: () => this.frontend.textSettings.key,
      ...(events.intent ? { onIntent: (k: number, s: ForwardedStatement) => events.intent!(k, s), onSkipped: (k: number) => events.skipped?.(k) } : {}),
    })
    this.frontend = new FrontendObserver(this.tracker, opts, events, new ClientTextSettings(opts.serverParameters), this.copyData)
    this.fromClient = new MessageStream(this.frontend, opts.maxMessageBytes, 'client')
    // DataRows are only counted: no call per row (MessageStream's run type).
    this.fromServer = new MessageStream(this.backendHandler(), 0x7fffffff, 'server', BE.DataRow)
  }

  /** Start relaying; `pending` holds client bytes read ahead during the handshake. */
  start(pending: Buffer): void {
    const { client, upstream } = this
    client.on('data', (chunk: Buffer) => this.clientData(chunk))
    upstream.on('data', (chunk: Buffer) => this.upstreamData(chunk))
    client.on('drain', () => upstream.resume())
    upstream.on('drain', () => {
      if (!this.gated) client.resume()
    })
    client.on('end', () => this.finish('client_closed', null))
    client.on('close', () => this.finish('client_closed', null))
    client.on('error', (e: Error) => this.finish('client_closed', `client connection error: ${e.message}`))
    upstream.on('end', () => this.finish('upstream_closed', 'the upstream server closed the connection'))
    upstream.on('close', () => this.finish('upstream_closed', 'the upstream server closed the connection'))
    upstream.on('error', (e: Error) => this.fail('upstream_error', new PgError({
      code: SQLSTATE.connectionFailure, message: `lost the connection to the upstream server: ${e.message}`,
    })))
    if (pending.length > 0) this.clientData(pending)
  }

  /** CopyData messages and payload bytes relayed each way so far. */
  get streamed(): StreamedCounts {
    return this.copyData.counts
  }

  /** A statement is in flight (sent, its end not yet seen). */
  get busy(): boolean {
    return this.tracker.pending > 0
  }

  /** End the session from the proxy's side, telling the client why. */
  terminate(reason: SessionEndReason, err: PgError): void {
    this.fail(reason, err)
  }

  private clientData(chunk: Buffer): void {
    // After the client's Terminate nothing it sends is read (PostgreSQL's backend exits on Terminate).
    if (this.ended || this.frontend.clientTerminated) return
    if (this.gated) {
      this.held.push(chunk)
      this.heldBytes += chunk.length
      if (this.heldBytes > HELD_LIMIT && !this.heldPaused) {
        this.heldPaused = true
        this.client.pause()
      }
      return
    }
    this.bytesIn += chunk.length
    let violation: PgError | null = null
    try {
      this.fromClient.push(chunk)
    } catch (err) {
      // Whatever stops the framing behind the client's Terminate (FrontendObserver.header, a bad length word) is ignored.
      if (!this.frontend.clientTerminated) violation = err instanceof PgError ? err : new ProtocolViolation(String(err))
    }
    const out = this.frontend.out.take()
    const gate = this.events.beforeForward?.() ?? null
    if (gate === null) return this.forward(out, violation)
    // Strict durability: nothing of this chunk goes upstream before its statements' intents are on disk.
    // The client is not paused for that (a pause and resume per round trip are two syscalls):
    // what it sends meanwhile waits in `held`, and only a client sending a lot is paused.
    this.gated = true
    gate.then(
      () => {
        this.gated = false
        if (this.ended) return
        this.forward(out, violation)
        if (this.heldPaused && !this.ended && !this.upstreamFull) {
          this.heldPaused = false
          this.client.resume()
        }
        while (!this.gated && !this.ended && this.held.length > 0) {
          const next = this.held.shift()!
          this.heldBytes -= next.length
          this.clientData(next)
        }
      },
      (err: Error) => {
        this.gated = false
        this.fail('audit_unavailable', new AuditUnavailable(err.message))
      },
    )
  }

  /** The upstream socket's buffer is full: the client stays paused until it drains. */
  private upstreamFull = false

  /** Forward what was framed (the valid messages before a violation too), in one write when possible. */
  private forward(out: Buffer[], violation: PgError | null): void {
    let ok = true
    if (out.length === 1) {
      ok = this.upstream.write(out[0]!)
    } else if (out.length > 1) {
      this.upstream.cork()
      for (const b of out) ok = this.upstream.write(b) && ok
      this.upstream.uncork()
    }
    this.upstreamFull = !ok
    if (!ok) this.client.pause()
    const answers = this.frontend.answersHere()
    if (answers !== null && !this.client.write(answers)) this.upstream.pause()
    if (violation) this.fail(violation instanceof AuditUnavailable ? 'audit_unavailable' : 'protocol_violation', violation)
  }

  private upstreamData(chunk: Buffer): void {
    if (this.ended && this.drained === null) return
    if (this.drained === null) this.bytesOut += chunk.length
    let invalid: Error | null = null
    this.holdingEnds = true
    try {
      this.fromServer.push(chunk)
    } catch (err) {
      invalid = err as Error
    }
    this.holdingEnds = false
    if (invalid === null && this.drained === null && !this.client.write(chunk)) this.upstream.pause()
    let unrecorded: AuditUnavailable | null = null
    try {
      this.recordHeldEnds()
    } catch (err) {
      unrecorded = err as AuditUnavailable
    }
    if (invalid !== null || unrecorded !== null) {
      if (this.drained !== null) return this.endDrain()
      if (invalid !== null) this.fail('upstream_error', new PgError({ code: SQLSTATE.protocolViolation, message: `invalid data from the upstream server: ${invalid.message}` }))
      else this.fail('audit_unavailable', unrecorded!)
      return
    }
    // The client is gone: outcomes only, until every statement it sent has one.
    if (this.drained !== null && this.tracker.pending === 0) this.endDrain()
  }

  private recordHeldEnds(): void {
    const ends = this.heldEnds
    if (ends.length === 0) return
    // One array for the session: nothing is held while these are recorded (holdingEnds is off).
    try {
      for (let i = 0; i < ends.length; i++) this.record(ends[i]!)
    } finally {
      ends.length = 0
    }
  }

  /**
   * Record a statement's or a transaction's end. Recording that fails (the
   * audit log refuses the record) throws AuditUnavailable: the session ends
   * as audit_unavailable (FATAL 58030), not as a fault of the client or the
   * server whose bytes were being read.
   */
  private record(e: ObservedStatement | TransactionEnd): void {
    try {
      // A TransactionEnd has first/last seq; an ObservedStatement has neither.
      if ('firstSeq' in e) this.events.transactionEnd?.(e)
      else this.events.statement(e)
    } catch (err) {
      throw err instanceof AuditUnavailable ? err : new AuditUnavailable(`the audit log refused a record (${(err as Error).message})`)
    }
  }

  /**
   * Set while the client is gone but statements it sent are still running
   * upstream: PostgreSQL finishes them before it reads the Terminate behind
   * them, so their outcomes are read (not relayed) and recorded until all are
   * in or the server closes, at most until the 5 s close timer; then the
   * session ends.
   */
  private drained: { reason: SessionEndReason; detail: string | null } | null = null

  private endDrain(): void {
    const d = this.drained
    if (d === null) return
    this.drained = null
    this.tracker.abandon()
    this.events.end(d.reason, d.detail)
  }

  private fail(reason: SessionEndReason, err: PgError): void {
    if (this.ended) return
    // A client that sent Terminate is told nothing more (PostgreSQL sends nothing after it).
    if (!this.frontend.clientTerminated && !this.client.destroyed && this.client.writable) this.client.end(errorResponseFromPgError(err))
    this.finish(reason, err.message)
  }

  private finish(reason: SessionEndReason, detail: string | null): void {
    if (this.ended) {
      if (reason === 'upstream_closed') this.endDrain()
      return
    }
    this.ended = true
    // After the client's Terminate the server closing is the expected end, not an upstream failure.
    if (this.frontend.clientTerminated && reason === 'upstream_closed') {
      reason = 'client_closed'
      detail = null
    }
    // A client that vanished with statements in flight: PostgreSQL still runs them; record how they end.
    const drain = reason === 'client_closed' && this.tracker.pending > 0 &&
      !this.upstream.destroyed && this.upstream.writable
    if (!drain) this.tracker.abandon()
    if (!this.upstream.destroyed) {
      if (reason !== 'upstream_closed' && reason !== 'upstream_error' && !this.frontend.clientTerminated && this.upstream.writable) {
        this.upstream.end(TERMINATE)
      } else {
        this.upstream.end()
      }
    }
    if (!this.client.destroyed && this.client.writable) this.client.end()
    // Do not wait forever for a peer that ignores our FIN.
    setTimeout(() => {
      this.client.destroy()
      this.upstream.destroy()
      this.endDrain()
    }, 5000).unref()
    if (drain) {
      this.drained = { reason, detail }
      this.upstream.resume()
      return
    }
    this.events.end(reason, detail)
  }

  /**
   * A ParameterStatus from the server: a setting changed (by a SET, a
   * function, a RESET...). How the server reads the client's text depends on
   * client_encoding and standard_conforming_strings, so they are followed here.
   */
  parameterStatus(name: string, value: string): void {
    this.frontend.textSettings.parameterStatus(name, value)
  }

  // ---- observation (the client's messages: FrontendObserver) -------------

  private backendHandler(): MessageHandler {
    const t = this.tracker
    return {
      header: (type, len) =>
        type === BE.CopyData ? (this.copyData.server(len), BodyMode.Skip) : type === BE.ErrorResponse || type === BE.CommandComplete || type === BE.ReadyForQuery || type === BE.ParameterStatus
          ? BodyMode.Capture
          : BodyMode.Skip,
      message: (type, body) => {
        if (type === BE.ErrorResponse) t.error(decodeErrorFields(body))
        else if (type === BE.ParameterStatus) this.backendParameterStatus(body)
        else t.backend(type, body)
      },
      piece: () => undefined,
      end: (type) => t.backend(type, null),
      run: (_type, n) => t.dataRows(n),
    }
  }

  /** ParameterStatus body: name NUL value NUL (server-encoded; the names and values that matter here are ASCII). */
  private backendParameterStatus(body: Buffer): void {
    const z = body.indexOf(0)
    if (z < 0) return
    const end = body.indexOf(0, z + 1)
    this.parameterStatus(body.toString('utf8', 0, z), body.toString('utf8', z + 1, end < 0 ? body.length : end))
  }
}
