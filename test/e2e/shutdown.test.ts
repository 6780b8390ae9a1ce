import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import pino from 'pino'
import { ProxyServer } from '../../src/server.js'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType } from '../helpers/audit.js'

t.test('graceful shutdown: in-flight statements finish within the grace, then every session ends with 57P01', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  const auditPath = path.join(f.dir, 'shutdown-audit.jsonl')
  const proxy = await ProxyServer.start({ ...f.config, limits: { ...f.config.limits, shutdownGraceMs: 3000 }, audit: { ...f.config.audit, log: auditPath } }, pino({ level: 'silent' }))
  const connect = async () => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: 'app', database: 'appdb', password: await f.token(), ssl: { rejectUnauthorized: false } })
    const errors: Array<Error & { code?: string }> = []
    c.on('error', (e) => errors.push(e))
    await c.connect()
    return { c, errors }
  }
  const idle = await connect()
  const short = await connect()
  const long = await connect()
  const shortQuery = short.c.query('select pg_sleep(0.5), 1 as done')
  const longQuery = long.c.query('select pg_sleep(30)').then(() => null, (e: Error & { code?: string }) => e)
  await new Promise((r) => setTimeout(r, 150)) // both statements are running upstream
  const stopped = proxy.stop()
  t.same((await shortQuery).rows.map((r) => r.done), [1], 'a statement in flight finishes')
  const longErr = await longQuery
  t.ok(longErr, 'a statement still running at the deadline is cut off')
  await stopped
  const idleErr = await idle.c.query('select 1').then(() => null, (e: Error) => e)
  t.ok(idleErr, 'idle sessions were ended')

  const recs = readValidAuditLog(auditPath)
  const starts = recordsOfType(recs, 'session.start')
  const ends = recordsOfType(recs, 'session.end')
  t.equal(starts.length, 3)
  t.same(ends.map((e) => e.session.id).sort(), starts.map((s) => s.session.id).sort(), 'a session.end for every session.start')
  t.ok(ends.every((e) => e.reason === 'proxy_shutdown'))
  const sleep = recordsOfType(recs, 'statement').find((s) => s.statement.text === 'select pg_sleep(0.5), 1 as done')
  t.equal(sleep?.outcome.status, 'ok', 'the finished statement is recorded ok')
  t.equal(recs[recs.length - 1]!.type, 'proxy.stop')
})
