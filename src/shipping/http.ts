/**
 * HTTP(S) sink: POSTs batches of NDJSON (Content-Type application/x-ndjson),
 * see http-body.ts for the envelopes (none, splunk_hec, elastic_bulk).
 *
 * A batch is delivered when every POST of it got a 2xx (and, for _bulk,
 * every document was stored or already there). Anything else fails the
 * batch and the shipper retries it from its first record:
 *   - network errors, timeouts, 408, 429, 5xx: retried with backoff; a
 *     Retry-After (seconds or an HTTP date) is honoured;
 *   - other 4xx (bad token, wrong path): logged as an error and retried
 *     too — a record is never dropped; the lag shows it.
 * Configured header values (e.g. Authorization) never appear in logs, and
 * the URL is logged without its query string.
 */
import http from 'node:http'
import https from 'node:https'
import type { Logger } from 'pino'
import type { HttpSinkConfig } from '../config/types.js'
import { VERSION } from '../version.js'
import { rendererFor, type RecordRenderer } from './format.js'
import { elasticBulkFailure, ndjsonBodies } from './http-body.js'
import { errorText, SinkError, type FollowedRecord, type SinkTransport } from './types.js'

/** Largest response body read (for error messages and the _bulk items). */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024

interface Response {
  status: number
  headers: http.IncomingHttpHeaders
  body: string
}

export class HttpTransport implements SinkTransport {
  readonly describe: string
  private readonly url: URL
  private readonly agent: http.Agent
  private readonly render: RecordRenderer

  constructor(private readonly c: HttpSinkConfig, _log: Logger) {
    this.url = new URL(c.url)
    this.describe = `${this.url.origin}${this.url.pathname}`
    this.render = rendererFor(c.format)
    this.agent = this.url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, maxSockets: 1, minVersion: 'TLSv1.2', ...(c.ca !== null ? { ca: c.ca.pem } : {}) })
      : new http.Agent({ keepAlive: true, maxSockets: 1 })
  }

  async send(batch: readonly FollowedRecord[], signal: AbortSignal): Promise<void> {
    const bodies = ndjsonBodies(batch, this.render, { envelope: this.c.envelope, index: this.c.index, maxBytes: this.c.batchBytes })
    // In order, one at a time: a failure re-sends the whole batch (at-least-once), earlier bodies included.
    for (const body of bodies) {
      const res = await this.post(body, signal)
      this.check(res)
    }
  }

  async close(): Promise<void> {
    this.agent.destroy()
  }

  private check(res: Response): void {
    const s = res.status
    if (s >= 200 && s < 300) {
      if (this.c.envelope === 'elastic_bulk') {
        const failure = elasticBulkFailure(res.body)
        if (failure !== null) throw new SinkError(`${this.describe}: _bulk: ${failure}`)
      }
      return
    }
    const retryAfterMs = s === 429 || s === 503 || s === 408 || s >= 500 ? parseRetryAfter(res.headers['retry-after']) : null
    const what = `${this.describe} answered HTTP ${s}${snippet(res.body)}`
    const transient = s === 408 || s === 429 || s >= 500
    throw new SinkError(what, { retryAfterMs, refused: !transient })
  }

  private post(body: Buffer, signal: AbortSignal): Promise<Response> {
    const lib = this.url.protocol === 'https:' ? https : http
    return new Promise((resolve, reject) => {
      const fail = (err: unknown) => reject(err instanceof SinkError ? err : new SinkError(`${this.describe}: ${errorText(err)}`, { cause: err }))
      const req = lib.request(this.url, {
        method: 'POST',
        agent: this.agent,
        signal,
        headers: {
          ...this.c.headers,
          'Content-Type': 'application/x-ndjson',
          'Content-Length': String(body.length),
          'User-Agent': `pgwitness/${VERSION}`,
        },
      }, (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (c: Buffer) => {
          if (size < MAX_RESPONSE_BYTES) chunks.push(c)
          size += c.length
        })
        res.on('end', () => {
          clearTimeout(timer)
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') })
        })
        res.on('error', fail)
      })
      const timer = setTimeout(() => req.destroy(new Error(`no complete answer within ${this.c.timeoutMs} ms`)), this.c.timeoutMs)
      req.on('error', (err) => {
        clearTimeout(timer)
        fail(err)
      })
      req.end(body)
    })
  }
}

/** Retry-After: delay-seconds or an HTTP-date (RFC 9110 section 10.2.3); null when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined, now = Date.now()): number | null {
  const s = (Array.isArray(v) ? v[0] : v)?.trim()
  if (!s) return null
  if (/^\d+$/.test(s)) return Number(s) * 1000
  const t = Date.parse(s)
  return Number.isFinite(t) ? Math.max(0, t - now) : null
}

/** A short, single-line excerpt of a response body for the error message. */
function snippet(body: string): string {
  const s = body.replace(/\s+/g, ' ').trim().slice(0, 200)
  return s === '' ? '' : `: ${s}`
}
