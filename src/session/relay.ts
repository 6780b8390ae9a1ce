import type { Duplex } from 'node:stream'
import type { SessionEndReason } from '../audit/types.js'
import { recordParameters, type ParameterPolicy } from '../audit/parameters.js'
import { errorResponseFromPgError } from '../protocol/backend-messages.js'
import { decodeErrorFields } from '../protocol/backend-fields.js'
import { PgError, ProtocolViolation, SQLSTATE } from '../protocol/errors.js'
import {
  BindStreamDecoder,
  FrontendType as F,
  bindParamFormat,
  decodeBind,
  decodeClose,
  decodeDescribe,
  decodeExecute,
  decodeFunctionCall,
  decodeParse,
  decodeQuery,
  type DecodedBind,
} from '../protocol/frontend.js'
import { BodyMode, MessageStream, type MessageHandler } from '../protocol/message-stream.js'
import { StatementTracker, type Denial, type ForwardedStatement, type ObservedStatement } from './statement-tracker.js'
import { serialize } from 'pg-protocol'
import { splitStatements, type SplitStatement } from '../audit/split.js'
import { reservedSettingViolation } from '../policy/reserved-settings.js'
import { decodeUtf8Prefix } from '../util/utf8.js'

export interface RelayOptions {
  maxMessageBytes: number
  maxStatementBytes: number
  maxParameterBytes: number
  parameters: ParameterPolicy
  /**
   * When the client vanishes with statements in flight, keep reading their
   * outcomes until the server has answered them (default true). Off for a
   * pooled upstream connection, whose lease decides on its own.
   */
  drainOnClientLoss?: boolean
}

export interface RelayEvents {
  statement(s: ObservedStatement): void
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

/** Frontend messages at or above this size are streamed instead of captured whole. */
const STREAM_THRESHOLD = 1 << 20

const BACKEND_ERROR = 0x45
const BACKEND_COMMAND_COMPLETE = 0x43
const BACKEND_READY = 0x5a

const KNOWN_FRONTEND: ReadonlySet<number> = new Set(Object.values(F).filter((t) => t !== F.Password))

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
  private readonly tracker: StatementTracker
  private readonly fromClient: MessageStream
  private readonly fromServer: MessageStream
  /** Frontend bytes to forward upstream, framed message by message. */
  private readonly out = new OutputRun()
  /** Prepared statements whose Parse was refused and replaced (their Binds carry no parameters). */
  private readonly deniedStatements = new Set<string>()
  /** Portals bound to such statements: executing them runs only the refusal. */
  private readonly deniedPortals = new Set<string>()
  private ended = false
  private clientTerminated = false
  /** Waiting for beforeForward(): client chunks that arrive meanwhile wait here, in order. */
  private gated = false
  private held: Buffer[] = []
  private heldBytes = 0
  /** The client was paused because too much arrived while gated. */
  private heldPaused = false
  // Stream-mode state for one large frontend message at a time.
  private bindStream: BindStreamDecoder | null = null
  private textPrefix: Buffer[] = []
  private textPrefixBytes = 0

  constructor(
    private readonly client: Duplex,
    private readonly upstream: Duplex,
    private readonly opts: RelayOptions,
    private readonly events: RelayEvents,
  ) {
    this.tracker = new StatementTracker({
      maxStatementBytes: opts.maxStatementBytes,
      onStatement: (s) => events.statement(s),
      ...(events.intent ? { onIntent: (k: number, s: ForwardedStatement) => events.intent!(k, s), onSkipped: (k: number) => events.skipped?.(k) } : {}),
    })
    this.fromClient = new MessageStream(this.frontendHandler(), opts.maxMessageBytes, 'client')
    this.fromServer = new MessageStream(this.backendHandler(), 0x7fffffff, 'server')
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

  /** A statement is in flight (sent, its end not yet seen). */
  get busy(): boolean {
    return this.tracker.pending > 0
  }

  /** End the session from the proxy's side, telling the client why. */
  terminate(reason: SessionEndReason, err: PgError): void {
    this.fail(reason, err)
  }

  private clientData(chunk: Buffer): void {
    if (this.ended) return
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
      violation = err instanceof PgError ? err : new ProtocolViolation(String(err))
    }
    const out = this.out.take()
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
    if (violation) this.fail(violation instanceof AuditUnavailable ? 'audit_unavailable' : 'protocol_violation', violation)
  }

  private upstreamData(chunk: Buffer): void {
    if (this.ended && this.drained === null) return
    if (this.drained === null) this.bytesOut += chunk.length
    try {
      this.fromServer.push(chunk)
    } catch (err) {
      if (this.drained !== null) return this.endDrain()
      this.fail('upstream_error', new PgError({ code: SQLSTATE.protocolViolation, message: `invalid data from the upstream server: ${(err as Error).message}` }))
      return
    }
    if (this.drained !== null) {
      // The client is gone: outcomes only, until every statement it sent has one.
      if (this.tracker.pending === 0) this.endDrain()
      return
    }
    if (!this.client.write(chunk)) this.upstream.pause()
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
    if (!this.client.destroyed && this.client.writable) this.client.end(errorResponseFromPgError(err))
    this.finish(reason, err.message)
  }

  private finish(reason: SessionEndReason, detail: string | null): void {
    if (this.ended) {
      if (reason === 'upstream_closed') this.endDrain()
      return
    }
    this.ended = true
    // After the client's Terminate the server closing is the expected end, not an upstream failure.
    if (this.clientTerminated && reason === 'upstream_closed') {
      reason = 'client_closed'
      detail = null
    }
    // A client that vanished with statements in flight: PostgreSQL still runs them; record how they end.
    const drain = reason === 'client_closed' && this.opts.drainOnClientLoss !== false && this.tracker.pending > 0 &&
      !this.upstream.destroyed && this.upstream.writable
    if (!drain) this.tracker.abandon()
    if (!this.upstream.destroyed) {
      if (reason !== 'upstream_closed' && reason !== 'upstream_error' && !this.clientTerminated && this.upstream.writable) {
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

  // ---- observation ----------------------------------------------------

  private frontendHandler(): MessageHandler {
    const t = this.tracker
    const out = this.out
    const maxParam = this.opts.maxParameterBytes
    return {
      header: (type, len) => {
        if (!KNOWN_FRONTEND.has(type)) {
          throw new ProtocolViolation(`invalid frontend message type ${type}`)
        }
        let mode = BodyMode.Capture
        switch (type) {
          case F.CopyData:
          case F.CopyDone:
            mode = BodyMode.Stream
            break
          case F.Terminate:
            this.clientTerminated = true
            break
          case F.Bind:
            if (len >= STREAM_THRESHOLD) {
              this.bindStream = new BindStreamDecoder(len, maxParam)
              mode = BodyMode.Stream
            }
            break
          case F.Query:
          case F.Parse:
          case F.FunctionCall:
            if (len >= STREAM_THRESHOLD) {
              this.textPrefix = []
              this.textPrefixBytes = 0
              mode = BodyMode.Stream
            }
            break
        }
        // Streamed messages are forwarded as they arrive: their header goes first.
        if (mode === BodyMode.Stream) out.add(frameHeader(type, len))
        return mode
      },
      message: (type, body, frame) => {
        out.add(this.observeFrontend(type, body) ?? frame ?? Buffer.concat([frameHeader(type, body.length), body]))
      },
      piece: (type, piece) => {
        out.add(piece)
        if (type === F.Bind) {
          this.bindStream!.push(piece)
        } else if ((type === F.Query || type === F.Parse || type === F.FunctionCall) && this.textPrefixBytes < this.opts.maxStatementBytes + 1024) {
          // Keep only what a record can hold of a huge Query/Parse text.
          this.textPrefix.push(Buffer.from(piece.subarray(0, this.opts.maxStatementBytes + 1024 - this.textPrefixBytes)))
          this.textPrefixBytes += this.textPrefix[this.textPrefix.length - 1]!.length
        }
      },
      end: (type) => {
        if (type === F.Bind && this.bindStream) {
          this.recordBind(this.bindStream.result())
          this.bindStream = null
        } else if (type === F.Query || type === F.Parse || type === F.FunctionCall) {
          const prefix = Buffer.concat(this.textPrefix)
          this.textPrefix = []
          if (type === F.Query) {
            t.query(prefixText(prefix, 0), true, null)
          } else if (type === F.Parse) {
            const nameEnd = prefix.indexOf(0)
            t.parse(prefix.toString('utf8', 0, Math.max(nameEnd, 0)), prefixText(prefix, nameEnd + 1), true, null)
          } else {
            t.functionCall(prefix.length >= 4 ? prefix.readUInt32BE(0) : 0, null)
          }
        }
      },
    }
  }

  /**
   * Observe one complete frontend message; returns a replacement to forward
   * instead of it (a refused statement), or null to forward it unchanged.
   */
  private observeFrontend(type: number, body: Buffer): Buffer | null {
    const t = this.tracker
    switch (type) {
      case F.Query: {
        const text = decodeQuery(body).text
        const denial = this.auditDenial() ?? firstDenial(splitStatements(text))
        t.query(text, false, denial)
        return denial ? serialize.query(denialStatement(denial)) : null
      }
      case F.Parse: {
        const p = decodeParse(body)
        const denial = this.auditDenial() ?? firstDenial(splitStatements(p.text).slice(0, 1))
        t.parse(p.name, p.text, false, denial)
        if (!denial) {
          this.deniedStatements.delete(p.name)
          return null
        }
        // The server parses a statement that raises the refusal when executed, so its
        // transaction state ends up exactly as the client is told; the real text never goes upstream.
        this.deniedStatements.add(p.name)
        return serialize.parse({ name: p.name, text: denialStatement(denial), types: [] })
      }
      case F.Bind: {
        const b = decodeBind(body, this.opts.maxParameterBytes)
        this.recordBind(b)
        if (!this.deniedStatements.has(b.statement)) {
          this.deniedPortals.delete(b.portal)
          return null
        }
        this.deniedPortals.add(b.portal)
        return serialize.bind({ portal: b.portal, statement: b.statement, values: [] })
      }
      case F.Execute: {
        const portal = decodeExecute(body).portal
        this.refuseUnaudited(!this.deniedPortals.has(portal))
        t.execute(portal)
        return null
      }
      case F.Describe:
        t.describe(decodeDescribe(body).target)
        return null
      case F.Close: {
        const c = decodeClose(body)
        t.close(c.target, c.name)
        return null
      }
      case F.Sync:
        t.sync()
        return null
      case F.FunctionCall: {
        this.refuseUnaudited(true)
        const f = decodeFunctionCall(body, this.opts.maxParameterBytes)
        t.functionCall(f.functionOid, recordParameters(f.args, (i) => bindParamFormat({ paramFormats: f.argFormats }, i), this.opts.parameters))
        return null
      }
      default:
        return null // Flush, CopyFail, Terminate: nothing to record
    }
  }

  /** Fail closed: while the audit log cannot be written, statements are refused rather than run unaudited. */
  private auditDenial(): Denial | null {
    const why = this.events.auditUnavailable?.() ?? null
    return why === null ? null : { code: SQLSTATE.ioError, reason: `${why}; statements are refused rather than run unaudited` }
  }

  /**
   * An Execute of a statement prepared earlier (or a FunctionCall) cannot be
   * replaced by a refusal the way a Query or Parse is: while the audit log
   * cannot be written, the session ends instead (FATAL 58030).
   */
  private refuseUnaudited(wouldRun: boolean): void {
    const why = wouldRun ? this.events.auditUnavailable?.() ?? null : null
    if (why !== null) throw new AuditUnavailable(why)
  }

  private recordBind(b: DecodedBind): void {
    this.tracker.bind(b.portal, b.statement, recordParameters(b.params, (i) => bindParamFormat(b, i), this.opts.parameters))
  }

  private backendHandler(): MessageHandler {
    const t = this.tracker
    return {
      header: (type) =>
        type === BACKEND_ERROR || type === BACKEND_COMMAND_COMPLETE || type === BACKEND_READY ? BodyMode.Capture : BodyMode.Skip,
      message: (type, body) => {
        if (type === BACKEND_ERROR) t.error(decodeErrorFields(body))
        else t.backend(type, body)
      },
      piece: () => undefined,
      end: (type) => t.backend(type, null),
    }
  }
}

function frameHeader(type: number, bodyLength: number): Buffer {
  const h = Buffer.allocUnsafe(5)
  h[0] = type
  h.writeInt32BE(bodyLength + 4, 1)
  return h
}

/** The first statement a client may not run, as the reason it may not. */
function firstDenial(statements: readonly SplitStatement[]): Denial | null {
  for (const s of statements) {
    const why = reservedSettingViolation(s)
    if (why) return { code: SQLSTATE.insufficientPrivilege, reason: why }
  }
  return null
}

/** The audit log cannot be written: the session ends rather than run a statement unaudited. */
export class AuditUnavailable extends PgError {
  constructor(why: string) {
    super({ code: SQLSTATE.ioError, message: `pgwitness: ${why}; the session is ended rather than run statements unaudited` })
  }
}

/**
 * What goes upstream instead of a refused statement: a DO block raising the
 * refusal (SQLSTATE 42501), so the client gets the error from the server in
 * protocol order and the server's transaction fails exactly as PostgreSQL's
 * own refusal would make it.
 */
export function denialStatement(denial: Denial): string {
  const msg = `pgwitness: ${denial.reason}`.replace(/'/g, "''").replace(/\$/g, '')
  // The code is one of ours (SQLSTATE constants): five characters [0-9A-Z].
  return `DO $pgw$BEGIN RAISE EXCEPTION USING ERRCODE = '${denial.code}', MESSAGE = '${msg}'; END$pgw$`
}

/**
 * Buffers to forward, merging a message that directly follows the previous
 * one in the same chunk, so an unaltered chunk is forwarded as one write.
 */
class OutputRun {
  private bufs: Buffer[] = []

  add(b: Buffer): void {
    const last = this.bufs[this.bufs.length - 1]
    if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
      this.bufs[this.bufs.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length)
    } else {
      this.bufs.push(b)
    }
  }

  take(): Buffer[] {
    const b = this.bufs
    this.bufs = []
    return b
  }
}

/** Text of a NUL-terminated string of which only a prefix was kept. */
function prefixText(buf: Buffer, start: number): string {
  const end = buf.indexOf(0, start)
  return end < 0 ? decodeUtf8Prefix(buf, start) : buf.toString('utf8', start, end)
}
