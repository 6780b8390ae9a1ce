/**
 * NATS JetStream sink. Each record is published to `subject` with the
 * record id as its message id (header Nats-Msg-Id), so JetStream discards a
 * record it already has (within the stream's duplicate window): re-sending a
 * batch after a failure or a restart leaves one message per record. A batch
 * counts as delivered only when every message has its PubAck.
 *
 * The connection reconnects by itself; a publish while the server is away
 * times out, and the shipper retries the batch.
 */
import { connect, headers, nanos, StorageType, type ConnectionOptions, type JetStreamClient, type NatsConnection, type PubAck } from 'nats'
import type { Logger } from 'pino'
import type { NatsSinkConfig } from '../config/types.js'
import { rendererFor, type RecordRenderer } from './format.js'
import { errorText, SinkError, type FollowedRecord, type SinkTransport } from './types.js'

/** Publishes in flight at once within a batch (each waits for its PubAck). */
const PIPELINE = 256

export class NatsTransport implements SinkTransport {
  readonly describe: string
  private nc: NatsConnection | null = null
  private js: JetStreamClient | null = null
  private streamChecked = false
  private warnedStream = false
  private readonly render: RecordRenderer
  private readonly encoder = new TextEncoder()

  constructor(private readonly c: NatsSinkConfig, private readonly log: Logger) {
    this.describe = `${c.servers.map(withoutCredentials).join(',')} subject ${c.subject}${c.stream ? ` stream ${c.stream}` : ''}`
    this.render = rendererFor(c.format)
  }

  async send(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void> {
    const js = await this.client()
    for (let i = 0; i < batch.length && !signal.aborted; i += PIPELINE) {
      const acks = await Promise.allSettled(batch.slice(i, i + PIPELINE).map((r) => this.publish(js, r)))
      const failed = acks.find((a): a is PromiseRejectedResult => a.status === 'rejected')
      if (failed) throw new SinkError(`NATS publish: ${natsErrorText(failed.reason, this.c.subject)}`, { cause: failed.reason })
      for (const a of acks) this.checkStream((a as PromiseFulfilledResult<PubAck>).value)
    }
    if (signal.aborted) throw new SinkError('aborted')
  }

  async close(): Promise<void> {
    const nc = this.nc
    this.nc = null
    this.js = null
    if (nc && !nc.isClosed()) await nc.close()
  }

  private publish(js: JetStreamClient, r: FollowedRecord): Promise<PubAck> {
    const h = headers()
    h.set('Pgwitness-Seq', String(r.seq))
    h.set('Pgwitness-Type', r.record.type)
    return js.publish(this.c.subject, this.encoder.encode(this.render(r)), { msgID: r.record.id, headers: h, timeout: this.c.timeoutMs })
  }

  /** Connected client; on first use also makes sure the stream exists. */
  private async client(): Promise<JetStreamClient> {
    if (this.nc === null || this.nc.isClosed()) {
      this.js = null
      this.streamChecked = false
      try {
        this.nc = await connect(this.options())
      } catch (err) {
        this.nc = null
        throw new SinkError(`cannot connect to NATS ${this.c.servers.map(withoutCredentials).join(',')}: ${natsErrorText(err, this.c.subject)}`, { cause: err })
      }
      this.watchStatus(this.nc)
    }
    if (!this.streamChecked && this.c.stream !== null) {
      await this.ensureStream(this.nc, this.c.stream)
      this.streamChecked = true
    }
    this.js ??= this.nc.jetstream({ timeout: this.c.timeoutMs })
    return this.js
  }

  private options(): ConnectionOptions {
    const tlsWanted = this.c.ca !== null || this.c.servers.some((s) => s.startsWith('tls://'))
    return {
      servers: this.c.servers,
      name: `pgwitness audit sink ${this.c.name}`,
      timeout: this.c.timeoutMs,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      ...(this.c.user !== null ? { user: this.c.user, pass: this.c.password ?? '' } : {}),
      ...(this.c.token !== null ? { token: this.c.token } : {}),
      // tls: {} makes TLS required (the client refuses a server without it).
      ...(tlsWanted ? { tls: this.c.ca !== null ? { ca: this.c.ca.pem } : {} } : {}),
    }
  }

  private async ensureStream(nc: NatsConnection, stream: string): Promise<void> {
    const jsm = await nc.jetstreamManager({ timeout: this.c.timeoutMs }).catch((err: unknown) => {
      throw new SinkError(`JetStream is not available on the NATS server: ${natsErrorText(err, this.c.subject)}`, { cause: err })
    })
    try {
      await jsm.streams.info(stream)
      return
    } catch (err) {
      if (!isStreamNotFound(err)) throw new SinkError(`JetStream stream ${stream}: ${natsErrorText(err, this.c.subject)}`, { cause: err })
      if (!this.c.createStream) throw new SinkError(`JetStream stream ${stream} does not exist (create_stream is false)`)
    }
    try {
      await jsm.streams.add({
        name: stream,
        subjects: [this.c.subject],
        storage: StorageType.File,
        duplicate_window: nanos(this.c.duplicateWindowMs),
      })
      this.log.info({ sink: this.c.name, stream, subject: this.c.subject }, 'created the JetStream stream for the audit sink')
    } catch (err) {
      // Another instance may have created it at the same moment.
      if (!/already in use|already exists/i.test(errorText(err))) {
        throw new SinkError(`cannot create JetStream stream ${stream}: ${natsErrorText(err, this.c.subject)}`, { cause: err })
      }
    }
  }

  /** A PubAck from another stream than the configured one means the subject is captured elsewhere. */
  private checkStream(ack: PubAck): void {
    if (this.c.stream === null || ack.stream === this.c.stream || this.warnedStream) return
    this.warnedStream = true
    this.log.warn({ sink: this.c.name, subject: this.c.subject, stream: this.c.stream, acked_by: ack.stream },
      'audit records are stored by another JetStream stream than the configured one')
  }

  private watchStatus(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') this.log.info({ sink: this.c.name, event: s.type }, 'audit sink NATS connection')
      }
    })().catch(() => undefined)
  }
}

function isStreamNotFound(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; code?: string; message?: string }
  return e?.api_error?.err_code === 10059 || e?.code === '404' || /stream not found/i.test(e?.message ?? '')
}

/** NATS error codes as text an operator understands. */
function natsErrorText(err: unknown, subject: string): string {
  const code = (err as { code?: string })?.code
  if (code === '503') return `no JetStream stream captures subject ${subject} (no responders)`
  if (code === 'TIMEOUT') return 'timed out waiting for the server (is it up?)'
  if (code === 'CONNECTION_REFUSED') return 'connection refused'
  if (code === 'AUTHORIZATION_VIOLATION') return 'authorization violation (check user/password or token)'
  return errorText(err)
}

function withoutCredentials(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//')
}
