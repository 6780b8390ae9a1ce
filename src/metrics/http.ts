import http from 'node:http'
import type net from 'node:net'
import type { Logger } from 'pino'
import type { ListenAddress } from '../config/types.js'
import type { ReadinessReport } from './readiness.js'

/** What the metrics listener serves. */
export interface MetricsEndpoints {
  /** Prometheus text exposition. */
  metrics(): Promise<{ contentType: string; body: string }>
  readiness(): Promise<ReadinessReport>
}

/**
 * The operations listener on `metrics.listen`:
 * - `GET /metrics`: Prometheus text format;
 * - `GET /healthz`: 200 while the process runs (liveness);
 * - `GET /readyz`: 200 when every readiness check holds, else 503; JSON body
 *   naming each check and, for a failed one, why.
 * HEAD is answered like GET without a body; other methods get 405.
 */
export class MetricsHttpServer {
  private constructor(
    private readonly server: http.Server,
    readonly address: net.AddressInfo,
  ) {}

  static async start(listen: ListenAddress, endpoints: MetricsEndpoints, log: Logger): Promise<MetricsHttpServer> {
    const server = http.createServer((req, res) => {
      handle(req, res, endpoints).catch((err: Error) => {
        log.error({ err: err.message, path: req.url }, 'metrics endpoint failed')
        if (!res.headersSent) send(res, req, 500, 'text/plain; charset=utf-8', 'internal error\n')
        else res.destroy()
      })
    })
    server.keepAliveTimeout = 5000
    server.headersTimeout = 10_000
    server.requestTimeout = 30_000
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (err) => log.error({ err: err.message }, 'metrics listener error'))
    const address = server.address() as net.AddressInfo
    return new MetricsHttpServer(server, address)
  }

  get port(): number {
    return this.address.port
  }

  /** Stop listening and close every connection (idle keep-alive ones too). */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve())
      this.server.closeAllConnections()
    })
  }
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, endpoints: MetricsEndpoints): Promise<void> {
  const path = (req.url ?? '/').split('?', 1)[0]
  const known = path === '/metrics' || path === '/healthz' || path === '/readyz'
  if (!known) {
    send(res, req, 404, 'text/plain; charset=utf-8', 'not found: try /metrics, /healthz or /readyz\n')
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD')
    send(res, req, 405, 'text/plain; charset=utf-8', 'method not allowed\n')
    return
  }
  switch (path) {
    case '/healthz':
      send(res, req, 200, 'text/plain; charset=utf-8', 'ok\n')
      return
    case '/readyz': {
      const r = await endpoints.readiness()
      const body = JSON.stringify(r.ready ? { status: 'ready', checks: r.checks } : { status: 'unready', failed: r.failed, checks: r.checks })
      send(res, req, r.ready ? 200 : 503, 'application/json', body + '\n')
      return
    }
    case '/metrics': {
      const m = await endpoints.metrics()
      send(res, req, 200, m.contentType, m.body)
      return
    }
  }
}

function send(res: http.ServerResponse, req: http.IncomingMessage, status: number, contentType: string, body: string): void {
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' })
  res.end(req.method === 'HEAD' ? undefined : body)
}
