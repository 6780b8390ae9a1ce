import { recordParameters } from '../audit/parameters.js'
import { splitStatements, type SplitStatement } from '../audit/split.js'
import { PgError, ProtocolViolation, SQLSTATE } from '../protocol/errors.js'
import { BindStreamDecoder } from '../protocol/bind-stream.js'
import {
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
import { BodyMode, type MessageHandler } from '../protocol/message-stream.js'
import { serialize } from 'pg-protocol'
import { reservedSettingViolation } from '../policy/reserved-settings.js'
import { decodeUtf8Prefix } from '../util/utf8.js'
import type { RelayEvents, RelayOptions } from './relay.js'
import type { StatementTracker, Denial } from './statement-tracker.js'

/** Frontend messages at or above this size are streamed instead of captured whole. */
const STREAM_THRESHOLD = 1 << 20

const KNOWN_FRONTEND: ReadonlySet<number> = new Set(Object.values(F).filter((t) => t !== F.Password))

/**
 * The client-to-server half of a Relay: frames and decodes every frontend
 * message (streaming the large ones), tells the StatementTracker what was
 * sent, and collects what to forward upstream in `out` — the message as
 * sent, or a refusal in place of a statement the client may not run.
 */
export class FrontendObserver implements MessageHandler {
  /** Frontend bytes to forward upstream, framed message by message. */
  readonly out = new OutputRun()
  /** The client sent Terminate. */
  clientTerminated = false
  /** Prepared statements whose Parse was refused and replaced (their Binds carry no parameters). */
  private readonly deniedStatements = new Set<string>()
  /** Portals bound to such statements: executing them runs only the refusal. */
  private readonly deniedPortals = new Set<string>()
  // Stream-mode state for one large frontend message at a time.
  private bindStream: BindStreamDecoder | null = null
  private textPrefix: Buffer[] = []
  private textPrefixBytes = 0

  constructor(
    private readonly tracker: StatementTracker,
    private readonly opts: RelayOptions,
    private readonly events: RelayEvents,
  ) {}

  // ---- MessageHandler of the client's MessageStream ----------------------

  header(type: number, len: number): BodyMode {
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
          this.bindStream = new BindStreamDecoder(len, this.opts.maxParameterBytes)
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
    if (mode === BodyMode.Stream) this.out.add(frameHeader(type, len))
    return mode
  }

  message(type: number, body: Buffer, frame: Buffer | null): void {
    this.out.add(this.observeFrontend(type, body) ?? frame ?? Buffer.concat([frameHeader(type, body.length), body]))
  }

  piece(type: number, piece: Buffer): void {
    this.out.add(piece)
    if (type === F.Bind) {
      this.bindStream!.push(piece)
    } else if ((type === F.Query || type === F.Parse || type === F.FunctionCall) && this.textPrefixBytes < this.opts.maxStatementBytes + 1024) {
      // Keep only what a record can hold of a huge Query/Parse text.
      this.textPrefix.push(Buffer.from(piece.subarray(0, this.opts.maxStatementBytes + 1024 - this.textPrefixBytes)))
      this.textPrefixBytes += this.textPrefix[this.textPrefix.length - 1]!.length
    }
  }

  end(type: number): void {
    if (type === F.Bind && this.bindStream) {
      this.recordBind(this.bindStream.result())
      this.bindStream = null
    } else if (type === F.Query || type === F.Parse || type === F.FunctionCall) {
      const prefix = Buffer.concat(this.textPrefix)
      this.textPrefix = []
      if (type === F.Query) {
        this.tracker.query(prefixText(prefix, 0), true, null)
      } else if (type === F.Parse) {
        const nameEnd = prefix.indexOf(0)
        this.tracker.parse(prefix.toString('utf8', 0, Math.max(nameEnd, 0)), prefixText(prefix, nameEnd + 1), true, null)
      } else {
        this.tracker.functionCall(prefix.length >= 4 ? prefix.readUInt32BE(0) : 0, null)
      }
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
}

/** The header (type, length word) of a message whose body is forwarded in pieces. */
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
