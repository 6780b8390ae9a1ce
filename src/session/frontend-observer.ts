import { isAscii } from 'node:buffer'
import { recordParameters } from '../evidence/parameters.js'
import { isUnparsed, splitStatements, type SplitStatement, type TextOrigin } from '../classify/split.js'
import { decodeClientText, type DecodedClientText } from '../protocol/client-encoding.js'
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
  decodeParseBytes,
  decodeQueryBytes,
  type DecodedBind,
} from '../protocol/frontend.js'
import { BodyMode, HEADER_BYTES, type MessageHandler } from '../protocol/message-stream.js'
import { serialize } from 'pg-protocol'
import { reservedSettingViolation } from '../policy/reserved-settings.js'
import type { RelayEvents, RelayOptions } from './relay.js'
import type { StatementTracker, Denial, RereadableText } from './statement-tracker.js'
import { ClientTextSettings } from './client-text-settings.js'
import { judgeFunctionCall, judgePipelinedText, judgeText, refusesUnreadable, type TextVerdict } from './statement-policy.js'
import { StreamCounter } from '../replication/stream-counts.js'
import { replicationCommandOf, replicationStatement } from '../replication/commands.js'
import { errorResponse, readyForQuery } from '../protocol/backend-messages.js'
import { denialError } from './tracker-entries.js'
import { BackendType } from '../protocol/backend-types.js'

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
  /** Prepared statements whose Parse was refused and replaced (their Binds carry no parameters); made on the first refusal. */
  private deniedStatements: Set<string> | null = null
  /** Portals bound to such statements: executing them runs only the refusal. */
  private deniedPortals: Set<string> | null = null
  /** Refusals the proxy answers itself (see answersHere), in order. */
  private readonly refusedHere: Denial[] = []
  // Stream-mode state for one large frontend message at a time.
  private bindStream: BindStreamDecoder | null = null
  private textPrefix: Buffer[] = []
  private textPrefixBytes = 0

  constructor(
    private readonly tracker: StatementTracker,
    private readonly opts: RelayOptions,
    private readonly events: RelayEvents,
    /** client_encoding and standard_conforming_strings, as the server last reported them. */
    readonly textSettings: ClientTextSettings = new ClientTextSettings(),
    /** Counts the client's CopyData (replication feedback, COPY FROM data). */
    private readonly copyData: StreamCounter = new StreamCounter(),
  ) {}

  // ---- MessageHandler of the client's MessageStream ----------------------

  header(type: number, len: number): BodyMode {
    // After its Terminate the client has nothing more to say: PostgreSQL reads no further. Framing stops
    // here, so nothing behind it is forwarded or recorded; the relay ignores this error (it answers nothing after a Terminate).
    if (this.clientTerminated) throw new ProtocolViolation('data after the Terminate message')
    if (!KNOWN_FRONTEND.has(type)) {
      throw new ProtocolViolation(`invalid frontend message type ${type}`)
    }
    let mode = BodyMode.Capture
    switch (type) {
      case F.CopyData:
        this.copyData.client(len)
        mode = BodyMode.Stream
        break
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
        if (len >= STREAM_THRESHOLD && type !== F.FunctionCall && this.opts.unparseable === 'refuse') {
          // Only a prefix of a text this long is kept, so it cannot be split: refused before any of it goes upstream.
          throw new PgError({ severity: 'FATAL', code: SQLSTATE.syntaxError, message: `pgwitness: a ${len - 4}-byte statement text cannot be split into statements exactly (audit.unparseable: refuse)` })
        }
        if (len >= STREAM_THRESHOLD && refusesUnreadable(this.opts.statementRules ?? null)) {
          // Nor can it be checked against statement rules that refuse what they cannot classify.
          throw new PgError({ severity: 'FATAL', code: SQLSTATE.insufficientPrivilege, message: `pgwitness: a ${len - 4}-byte message is too long to be checked against the statement rules (unknown: deny)` })
        }
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

  message(type: number, body: Buffer, framed: boolean): void {
    const replacement = this.observeFrontend(type, body)
    if (replacement === NOTHING) return
    if (replacement !== null) this.out.add(replacement)
    else if (framed) this.out.addRange(body.buffer, body.byteOffset - HEADER_BYTES, body.length + HEADER_BYTES) // frameOf(body), without making it
    else this.out.add(Buffer.concat([frameHeader(type, body.length), body]))
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
        const d = this.prefixText(prefix, 0)
        this.tracker.query(d.text, true, { origin: this.originOf(d) })
      } else if (type === F.Parse) {
        const nameEnd = prefix.indexOf(0)
        const d = this.prefixText(prefix, nameEnd + 1)
        this.tracker.parse(prefix.toString('utf8', 0, Math.max(nameEnd, 0)), d.text, true, { origin: this.originOf(d) })
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
        const bytes = decodeQueryBytes(body).text
        const d = decodeClientText(bytes, this.textSettings.encoding)
        // On a replication connection a replication command is one statement of the walsender's own grammar.
        const command = this.opts.replication ? replicationCommandOf(d.text) : null
        const replication = command === null ? undefined : replicationStatement(d.text, command)
        const statements = replication ? [replication] : splitStatements(d.text, this.textSettings.standardConformingStrings)
        const verdict = judgeText(this.opts.statementRules ?? null, statements, d.raw === null)
        // The walsender reads its keywords the same under any client_encoding: nothing to read again.
        const rules = replication ? verdict : this.judgeInFlight(bytes, verdict, false)
        const denial = this.auditDenial() ?? (replication ? null : this.unsplittable(statements, d.raw === null)) ?? rules.denial ?? this.settingDenial(statements)
        // A physical walsender runs no SQL, so it cannot raise the refusal: with nothing in flight the proxy answers itself.
        const answerHere = denial !== null && replication !== undefined && this.opts.replication === 'physical' && t.pending === 0
        t.query(d.text, false, { denial, origin: this.originOf(d), reread: replication ? null : this.rereadable(bytes), policies: rules.policies, replication })
        if (answerHere) {
          this.refusedHere.push(denial)
          return NOTHING
        }
        return denial ? serialize.query(denialStatement(denial)) : null
      }
      case F.Parse: {
        const raw = decodeParseBytes(body)
        const p = { name: raw.name, ...decodeClientText(raw.text, this.textSettings.encoding) }
        const statements = splitStatements(p.text, this.textSettings.standardConformingStrings)
        // Several statements in one Parse: the server refuses it (42601) whatever the rules say.
        const rules = statements.length === 1
          ? this.judgeInFlight(raw.text, judgeText(this.opts.statementRules ?? null, statements, p.raw === null), true)
          : { denial: null, policies: null }
        const denial = this.auditDenial() ?? this.unsplittable(statements, p.raw === null) ?? rules.denial ?? this.settingDenial(statements.slice(0, 1))
        t.parse(p.name, p.text, false, { denial, origin: this.originOf(p), reread: this.rereadable(raw.text), policies: rules.policies })
        if (!denial) {
          this.deniedStatements?.delete(p.name)
          return null
        }
        // The server parses a statement that raises the refusal when executed, so its
        // transaction state ends up exactly as the client is told; the real text never goes upstream.
        ;(this.deniedStatements ??= new Set()).add(p.name)
        return serialize.parse({ name: p.name, text: denialStatement(denial), types: [] })
      }
      case F.Bind: {
        const b = decodeBind(body, this.opts.maxParameterBytes)
        this.recordBind(b)
        if (this.deniedStatements === null || !this.deniedStatements.has(b.statement)) {
          this.deniedPortals?.delete(b.portal)
          return null
        }
        ;(this.deniedPortals ??= new Set()).add(b.portal)
        return serialize.bind({ portal: b.portal, statement: b.statement, values: [] })
      }
      case F.Execute: {
        const portal = decodeExecute(body).portal
        this.refuseUnaudited(this.deniedPortals === null || !this.deniedPortals.has(portal))
        t.execute(portal)
        return null
      }
      case F.Describe:
        decodeDescribe(body) // validates it (a malformed Describe is a protocol violation)
        t.describe()
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
        const rules = judgeFunctionCall(this.opts.statementRules ?? null)
        t.functionCall(f.functionOid, recordParameters(f.args, (i) => bindParamFormat({ paramFormats: f.argFormats }, i), this.opts.parameters, this.textSettings.encoding), {
          denial: rules.denial, policies: rules.policies,
        })
        // Answered like the call's own failure would be: an ErrorResponse, then ReadyForQuery.
        return rules.denial ? serialize.query(denialStatement(rules.denial)) : null
      }
      default:
        return null // Flush, CopyFail, Terminate: nothing to record
    }
  }

  /**
   * The answers to commands refused without going upstream (a replication
   * command on a physical connection): ErrorResponse and ReadyForQuery, as
   * the server would send them, told to the tracker as if they came from it.
   * Called after the chunk is forwarded; null when there are none.
   */
  answersHere(): Buffer | null {
    if (this.refusedHere.length === 0) return null
    const out: Buffer[] = []
    for (const d of this.refusedHere) {
      const err = denialError(d)
      this.tracker.error(err)
      this.tracker.backend(BackendType.ReadyForQuery, IDLE)
      out.push(errorResponse({ severity: 'ERROR', ...err }), readyForQuery('I'))
    }
    this.refusedHere.length = 0
    return Buffer.concat(out)
  }

  /** Fail closed: while the audit log cannot be written, statements are refused rather than run unaudited. */
  private auditDenial(): Denial | null {
    const why = this.events.auditUnavailable?.() ?? null
    return why === null ? null : { code: SQLSTATE.ioError, reason: `${why}; statements are refused rather than run unaudited` }
  }

  /**
   * With `audit.unparseable: refuse`, text the proxy cannot split exactly as
   * the server will (its parser cannot read it, or its bytes have no exact
   * decoding) is refused (42601) instead of recorded per server result.
   */
  private unsplittable(statements: readonly SplitStatement[], exactText: boolean): Denial | null {
    if (this.opts.unparseable !== 'refuse' || (exactText && !isUnparsed(statements))) return null
    return { code: SQLSTATE.syntaxError, reason: 'the statement text cannot be split into statements exactly as the server would (audit.unparseable: refuse)' }
  }

  /**
   * With `session.governed_settings: refuse`, the first statement that would
   * change a governed setting; with `record` (default) they run, and their
   * records carry the flag (SplitStatement.governedSetting).
   */
  private settingDenial(statements: readonly SplitStatement[]): Denial | null {
    return this.opts.governedSettings === 'refuse' ? firstDenial(statements) : null
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
    const read = (bind: DecodedBind) => recordParameters(bind.params, (i) => bindParamFormat(bind, i), this.opts.parameters, this.textSettings.encoding)
    // Non-ASCII text parameters waiting behind statements that may change client_encoding: kept to read again.
    const waits = this.tracker.pending > 0 && b.params.some((p, i) => !p.isNull && bindParamFormat(b, i) === 0 && !isAscii(p.value))
    if (!waits) return this.tracker.bind(b.portal, b.statement, read(b))
    const kept: DecodedBind = { ...b, params: b.params.map((p) => ({ ...p, value: Buffer.from(p.value) })) }
    this.tracker.bind(b.portal, b.statement, read(kept), { readUnder: this.textSettings.key, again: () => read(kept) })
  }

  /** A text that waits behind unanswered statements is judged under every reading they could make the server use. */
  private judgeInFlight(bytes: Buffer, verdict: TextVerdict, single: boolean): TextVerdict {
    const rules = this.opts.statementRules ?? null
    if (rules === null || this.tracker.pending === 0) return verdict
    return judgePipelinedText(rules, bytes, this.textSettings, verdict, single)
  }

  /**
   * Text whose reading depends on client_encoding (non-ASCII bytes) or
   * standard_conforming_strings (a backslash) is kept as bytes while it waits
   * behind statements that may change them (StatementTracker.readNextBatch).
   */
  private rereadable(bytes: Buffer): RereadableText | null {
    if (this.tracker.pending === 0 || (isAscii(bytes) && bytes.indexOf(0x5c) < 0)) return null
    const kept = Buffer.from(bytes)
    return {
      readUnder: this.textSettings.key,
      again: () => {
        const d = decodeClientText(kept, this.textSettings.encoding)
        return { text: d.text, origin: this.originOf(d) }
      },
    }
  }

  /** How a text decoded now reached the server; undefined for plain UTF-8 under standard strings (nothing to record). */
  private originOf(d: Pick<DecodedClientText, 'encoding' | 'raw'>): TextOrigin | undefined {
    const s = this.textSettings
    return d.encoding === null && d.raw === null && s.standardConformingStrings ? undefined : s.origin(d.encoding, d.raw)
  }

  /** Text of a NUL-terminated string of which only a prefix was kept. */
  private prefixText(buf: Buffer, start: number): DecodedClientText {
    const end = buf.indexOf(0, start)
    return decodeClientText(buf.subarray(start, end < 0 ? buf.length : end), this.textSettings.encoding, end < 0)
  }
}

/** Forwarded in place of a message the proxy answers itself. */
const NOTHING = Buffer.alloc(0)
const IDLE = Buffer.from('I')

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
 * The current run is kept as offsets into its memory and made a Buffer only
 * when it ends (not one per message); a run covering a whole buffer that
 * was added as such is forwarded as that buffer.
 */
class OutputRun {
  private bufs: Buffer[] = []
  /** The run being extended: bytes [start, end) of `memory`; null: none. */
  private memory: ArrayBufferLike | null = null
  private start = 0
  private end = 0
  /** A Buffer that is exactly the run so far, when one was added alone (it is forwarded as is). */
  private whole: Buffer | null = null

  add(b: Buffer): void {
    const startsRun = this.memory !== b.buffer || this.end !== b.byteOffset
    this.addRange(b.buffer, b.byteOffset, b.length)
    if (startsRun) this.whole = b
  }

  /** Bytes [offset, offset + length) of `memory` (a message inside a chunk, without a Buffer made for it). */
  addRange(memory: ArrayBufferLike, offset: number, length: number): void {
    if (this.memory === memory && this.end === offset) {
      this.end += length
      this.whole = null
      return
    }
    this.close()
    this.memory = memory
    this.start = offset
    this.end = offset + length
  }

  take(): Buffer[] {
    this.close()
    const b = this.bufs
    this.bufs = []
    return b
  }

  private close(): void {
    const memory = this.memory
    if (memory === null) return
    this.memory = null
    this.bufs.push(this.whole ?? Buffer.from(memory, this.start, this.end - this.start))
    this.whole = null
  }
}
