import { Writable } from 'node:stream'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import pino from 'pino'
import { ProxyServer } from '../../src/server.js'
import { startFixture } from '../helpers/proxy.js'

// The operational log (pino) is for operators: it must never carry tokens,
// passwords or parameter values, even at trace level.
t.test('no token, password or parameter value reaches the operational log', async (t) => {
  const f = await startFixture()
  t.teardown(() => f.stop())
  let logged = ''
  const sink = new Writable({ write(chunk, _enc, done) { logged += chunk.toString(); done() } })
  const proxy = await ProxyServer.start({ ...f.config, audit: { ...f.config.audit, log: path.join(f.dir, 'logs-audit.jsonl') } }, pino({ level: 'trace' }, sink))
  const connect = async (password: string, o: { user?: string; database?: string } = {}) => {
    const c = new pg.Client({ host: '127.0.0.1', port: proxy.port, user: o.user ?? 'app', database: o.database ?? 'appdb', password, ssl: { rejectUnauthorized: false } })
    c.on('error', () => undefined)
    await c.connect()
    return c
  }
  const secrets: string[] = [f.appPassword, f.pg.superuserPassword]
  const good = await f.token()
  const expired = await f.token({ ttlSeconds: -120 })
  const dba = await f.token({ subject: 'alice', claims: { groups: ['dba'] } })
  secrets.push(good, expired, dba, ...[good, expired, dba].map((tok) => tok.split('.')[2]!))

  const c = await connect(good)
  const paramSecret = 'card-4111111111111111'
  secrets.push(paramSecret)
  await c.query('select $1::text as v', [paramSecret])
  await c.query('select 1/0').catch(() => undefined)
  await c.end()
  const admin = await connect(dba, { user: 'postgres', database: 'postgres' })
  const rolePassword = 'role-pw-' + Math.random().toString(36).slice(2)
  secrets.push(rolePassword)
  await admin.query(`create role logged_role password '${rolePassword}'`)
  await admin.end()
  await connect(expired).catch(() => undefined)
  await connect('not-a-token-but-a-password').catch(() => undefined)
  secrets.push('not-a-token-but-a-password')
  await proxy.stop()

  t.ok(logged.length > 0, 'the proxy logged (at trace level)')
  t.match(logged, 'pgwitness listening')
  for (const s of secrets) t.notOk(logged.includes(s), `the log does not contain a secret (${s.slice(0, 6)}…)`)
})
