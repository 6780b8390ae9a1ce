import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import t from 'tap'
import pg from 'pg'
import pino from 'pino'
import { prepareDevDefault } from '../../src/dev/default.js'
import { ensureDevIssuerKeys, mintDevToken } from '../../src/dev/tokens.js'
import { freePort } from '../harness/net.js'
import { ROOT } from '../helpers/cli.js'
import { ProxyServer } from '../../src/server.js'

// The Quick start's "works with nothing configured" promise: with no local
// PostgreSQL admitting the dev login, the dev default starts its own cluster.
t.test('the dev default falls back to a throwaway cluster and is usable end to end', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'pgw-devroot-'))
  mkdirSync(path.join(root, 'config'))
  const closed = await freePort()
  const yaml = readFileSync(path.join(ROOT, 'config', 'dev.yaml'), 'utf8')
    .replace('port: 5432', `port: ${closed}`)
    .replace('listen: "127.0.0.1:6432"', 'listen: "127.0.0.1:0"')
  t.not(yaml.indexOf(`port: ${closed}`), -1, 'test setup rewrote the upstream port')
  writeFileSync(path.join(root, 'config', 'dev.yaml'), yaml)
  cpSync(path.join(ROOT, 'schema'), path.join(root, 'schema'), { recursive: true })

  const { config, connectHint } = await prepareDevDefault(root)
  t.not(config.upstream.port, closed, 'upstream moved to the throwaway cluster')
  t.match(connectHint, 'throwaway PostgreSQL')
  t.match(connectHint, 'sslmode=require')
  const server = await ProxyServer.start(config, pino({ level: 'warn' }))
  t.teardown(() => server.stop())

  const keys = await ensureDevIssuerKeys(path.join(root, '.pgwitness-dev'))
  const c = new pg.Client({
    host: '127.0.0.1', port: server.port, user: 'postgres', database: 'postgres',
    password: await mintDevToken(keys.privateJwk, { subject: 'dev-user' }), ssl: { rejectUnauthorized: false },
  })
  await c.connect()
  const r = await c.query('select current_setting($1) as port', ['port'])
  t.equal(Number(r.rows[0].port), config.upstream.port)
  await c.end()
})
