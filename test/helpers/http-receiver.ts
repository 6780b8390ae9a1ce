/**
 * A local HTTP endpoint standing for a SIEM's ingest API: keeps every
 * request (path, headers, body), answers like the real thing for the paths
 * the tests use (plain NDJSON, Splunk HEC, Elastic _bulk with 409 for an _id
 * it already has), can be told to fail the next requests of a path with a
 * given status (and Retry-After), and can be stopped and started again on
 * the same port.
 */
import http from 'node:http'
import type { Socket } from 'node:net'
import { listen, shutDown } from './sink-outage.js'

export interface ReceivedRequest {
  path: string
  headers: http.IncomingHttpHeaders
  body: string
  /** When it arrived (ms). */
  at: number
  /** The status it was answered with. */
  status: number
}

export interface Failure {
  status: number
  retryAfter?: string
}

export interface HttpReceiver {
  readonly port: number
  readonly requests: ReceivedRequest[]
  /** Per path: answer the next requests with these failures, in order. */
  readonly failures: Map<string, Failure[]>
  stop(): Promise<void>
  start(): Promise<void>
}

export async function startHttpReceiver(): Promise<HttpReceiver> {
  const requests: ReceivedRequest[] = []
  const failures = new Map<string, Failure[]>()
  const bulkIds = new Set<string>()
  const sockets = new Set<Socket>()
  let server: http.Server | null = null
  let port = 0

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const path = req.url ?? '/'
      const body = Buffer.concat(chunks).toString('utf8')
      const fail = failures.get(path)?.shift()
      const entry: ReceivedRequest = { path, headers: req.headers, body, at: Date.now(), status: fail?.status ?? 200 }
      requests.push(entry)
      if (fail) {
        res.writeHead(fail.status, { 'Content-Type': 'text/plain', ...(fail.retryAfter ? { 'Retry-After': fail.retryAfter } : {}) })
        res.end(`failing on purpose (${fail.status})`)
        return
      }
      if (path.endsWith('/_bulk')) {
        // Elastic: `create` of an existing _id is a 409 conflict item, and the response says errors: true.
        const lines = body.split('\n').filter((l) => l !== '')
        const items: unknown[] = []
        for (let i = 0; i < lines.length; i += 2) {
          const id = (JSON.parse(lines[i]!) as { create: { _id: string } }).create._id
          const dup = bulkIds.has(id)
          bulkIds.add(id)
          items.push({ create: dup ? { _id: id, status: 409, error: { type: 'version_conflict_engine_exception' } } : { _id: id, status: 201, result: 'created' } })
        }
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end(JSON.stringify({ took: 1, errors: items.some((x) => (x as { create: { status: number } }).create.status !== 201), items }))
        return
      }
      if (path.startsWith('/services/collector')) {
        res.writeHead(200, { 'Content-Type': 'application/json' })
        res.end('{"text":"Success","code":0}')
        return
      }
      res.writeHead(200)
      res.end()
    })
  }

  const start = async () => {
    const srv = http.createServer(handle)
    srv.on('connection', (s) => {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
    })
    port = await listen(srv, port)
    server = srv
  }

  await start()
  return {
    get port() {
      return port
    },
    requests,
    failures,
    async stop() {
      const srv = server
      server = null
      if (srv !== null) await shutDown(srv, sockets)
    },
    start,
  }
}
