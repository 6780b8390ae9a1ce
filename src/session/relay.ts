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
import { StatementTracker, type ObservedStatement } from './statement-tracker.js'
import { serialize } from 'pg-protocol'
import { splitStatements, type SplitStatement } from '../audit/split.js'
import { reservedSettingViolation } from '../policy/reserved-settings.js'
import { decodeUtf8Prefix } from '../util/utf8.js'

export interface RelayOptions {
  maxMessageBytes: number
  maxStatementBytes: number
  maxParameterBytes: number
  parameters: ParameterPolicy
}

export interface RelayEvents {
  statement(s: ObservedStatement): void
  /** Called exactly once, after both sockets are closed or being closed. */
  end(reason: SessionEndReason, detail: string | null): void
}

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
  private ended = false
  private clientTerminated = false
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
    this.tracker = new StatementTracker({ maxStatementBytes: opts.maxStatementBytes, onStatement: (s) => events.statement(s) })
    this.fromClient = new MessageStream(this.frontendHandler(), opts.maxMessageBytes, 'client')
    this.fromServer = new MessageStream(this.backendHandler(), 0x7fffffff, 'server')
  }

  /** Start relaying; `pending` holds client bytes read ahead during the handshake. */
  start(pending: Buffer): void {
    const { client, upstream } = this
    client.on('data', (chunk: Buffer) => this.clientData(chunk))
    upstream.on('data', (chunk: Buffer) => this.upstreamData(chunk))
    client.on('drain', () => upstream.resume())
    upstream.on('drain', () => client.resume())
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
    this.bytesIn += chunk.length
    let violation: PgError | null = null
    try {
      this.fromClient.push(chunk)
    } catch (err) {
      violation = err instanceof PgError ? err : new ProtocolViolation(String(err))
    }
    // Forward what was framed (the valid messages before a violation too), in one write when possible.
    const out = this.out.take()
    if (out.length === 1) {
      if (!this.upstream.write(out[0]!)) this.client.pause()
    } else if (out.length > 1) {
      this.upstream.cork()
      let ok = true
      for (const b of out) ok = this.upstream.write(b) && ok
      this.upstream.uncork()
      if (!ok) this.client.pause()
    }
    if (violation) this.fail('protocol_violation', violation)
  }

  private upstreamData(chunk: Buffer): void {
    if (this.ended) return
    this.bytesOut += chunk.length
    try {
      this.fromServer.push(chunk)
    } catch (err) {
      this.fail('upstream_error', new PgError({ code: SQLSTATE.protocolViolation, message: `invalid data from the upstream server: ${(err as Error).message}` }))
      return
    }
    if (!this.client.write(chunk)) this.upstream.pause()
  }

  private fail(reason: SessionEndReason, err: PgError): void {
    if (this.ended) return
    if (!this.client.destroyed && this.client.writable) this.client.end(errorResponseFromPgError(err))
    this.finish(reason, err.message)
  }

  private finish(reason: SessionEndReason, detail: string | null): void {
    if (this.ended) return
    this.ended = true
    // After the client's Terminate the server closing is the expected end, not an upstream failure.
    if (this.clientTerminated && reason === 'upstream_closed') {
      reason = 'client_closed'
      detail = null
    }
    this.tracker.abandon()
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
    }, 5000).unref()
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
        const denial = firstDenial(splitStatements(text))
        t.query(text, false, denial)
        return denial ? serialize.query(denialStatement(denial)) : null
      }
      case F.Parse: {
        const p = decodeParse(body)
        const denial = firstDenial(splitStatements(p.text).slice(0, 1))
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
        return this.deniedStatements.has(b.statement) ? serialize.bind({ portal: b.portal, statement: b.statement, values: [] }) : null
      }
      case F.Execute:
        t.execute(decodeExecute(body).portal)
        return null
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
        const f = decodeFunctionCall(body, this.opts.maxParameterBytes)
        t.functionCall(f.functionOid, recordParameters(f.args, (i) => bindParamFormat({ paramFormats: f.argFormats }, i), this.opts.parameters))
        return null
      }
      default:
        return null // Flush, CopyFail, Terminate: nothing to record
    }
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
function firstDenial(statements: readonly SplitStatement[]): string | null {
  for (const s of statements) {
    const why = reservedSettingViolation(s)
    if (why) return why
  }
  return null
}

/**
 * What goes upstream instead of a refused statement: a DO block raising the
 * refusal (SQLSTATE 42501), so the client gets the error from the server in
 * protocol order and the server's transaction fails exactly as PostgreSQL's
 * own refusal would make it.
 */
export function denialStatement(reason: string): string {
  const msg = `pgwitness: ${reason}`.replace(/'/g, "''").replace(/\$/g, '')
  return `DO $pgw$BEGIN RAISE EXCEPTION USING ERRCODE = '42501', MESSAGE = '${msg}'; END$pgw$`
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
