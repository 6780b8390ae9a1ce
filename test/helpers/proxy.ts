/**
 * End-to-end fixture: a throwaway PostgreSQL (scram-sha-256), a dev PKI and
 * token issuer, and a pgwitness ProxyServer in this process in front of it.
 * Tests connect real clients (pg, psql, pgbench) to `proxy.port`.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import pg from 'pg'
import { parseConfig } from '../../src/config/load.js'
import type { PgwitnessConfig } from '../../src/config/types.js'
import { createDevPki, type DevPki } from '../../src/dev/pki.js'
import { createDevIssuerKeys, DEV_AUDIENCE, DEV_ISSUER, mintDevToken, type DevIssuerKeys, type DevTokenOptions } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { startPostgres, type PgCluster, type StartPostgresOptions } from '../harness/postgres.js'

export interface Fixture {
  pg: PgCluster
  proxy: ProxyServer
  config: PgwitnessConfig
  dir: string
  pki: DevPki
  issuer: DevIssuerKeys
  auditPath: string
  /** Role `app` (password in config) may use database `appdb`. */
  appPassword: string
  token(o?: Partial<DevTokenOptions>): Promise<string>
  /** node-postgres client through the proxy, TLS (no verification of the dev cert). */
  client(o?: { token?: string; user?: string; database?: string; ssl?: boolean; applicationName?: string }): Promise<pg.Client>
  /** Environment for psql/pgbench through the proxy. */
  libpqEnv(token: string, o?: { user?: string; database?: string; sslmode?: string }): NodeJS.ProcessEnv
  stop(): Promise<void>
}

export interface FixtureOptions {
  /** Extra YAML appended to the generated config (top-level keys). */
  extraYaml?: string
  /** Extra keys under identity: (indented two spaces), e.g. approvals. */
  identityYaml?: string
  /** Replace the generated policy section. */
  policyYaml?: string
  /** Replace the generated audit section. */
  auditYaml?: string
  /** Replace the generated tls section (paths: use PKI placeholders {cert} {key} {ca}). */
  tlsYaml?: string
  /** The lines under limits: (default '  handshake_timeout: 10s'). */
  limitsYaml?: string
  pg?: StartPostgresOptions
  /** Upstream password for role `app` as written in config (default: the real one). */
  appPasswordInConfig?: string | null
}

export async function startFixture(opts: FixtureOptions = {}): Promise<Fixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-e2e-'))
  const cluster = await startPostgres(opts.pg)
  const appPassword = 'app-' + Math.random().toString(36).slice(2)
  await cluster.createRole('app', appPassword, { database: 'appdb' })
  await cluster.createRole('reporter', 'reporter-' + Math.random().toString(36).slice(2))
  const pki = await createDevPki(path.join(dir, 'pki'))
  const issuer = await createDevIssuerKeys(path.join(dir, 'issuer'))
  const auditPath = path.join(dir, 'audit', 'audit.jsonl')
  const appPw = opts.appPasswordInConfig === undefined ? appPassword : opts.appPasswordInConfig
  const yaml = `
instance: test-proxy
listen: "127.0.0.1:0"
${opts.tlsYaml?.replace('{cert}', pki.serverCert).replace('{key}', pki.serverKey).replace('{ca}', pki.caCert) ?? `tls:
  cert: ${pki.serverCert}
  key: ${pki.serverKey}`}
identity:
  jwt:
    - issuer: ${DEV_ISSUER}
      audience: ${DEV_AUDIENCE}
      jwks_file: ${issuer.jwksPath}
      record_claims: [team, "kubernetes.io.namespace"]
${opts.identityYaml ?? ''}
upstream:
  host: 127.0.0.1
  port: ${cluster.port}
  tls: { mode: disable }
  roles:
    app: { password: ${appPw === null ? 'null' : JSON.stringify(appPw)} }
    postgres: { password: ${JSON.stringify(cluster.superuserPassword)} }
${opts.policyYaml ?? `policy:
  - name: billing-app
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
  - name: dba
    match: { issuer: ${DEV_ISSUER}, claims: { groups: dba } }
    roles: ["*"]
    databases: ["*"]`}
${opts.auditYaml ?? `audit:
  log: ${auditPath}
  durability: strict
  fsync_interval: 20ms
  # Tests here look up each refused attempt's own record: every failure is written.
  # Summaries (the default) are tested in e2e/auth-failure-summary.test.ts.
  auth_failure_summary: { window: 0s }`}
limits:
${opts.limitsYaml ?? '  handshake_timeout: 10s'}
log: { level: ${process.env.PGW_TEST_LOG ?? 'warn'} }
${opts.extraYaml ?? ''}
`
  writeFileSync(path.join(dir, 'pgwitness.yaml'), yaml)
  let config: PgwitnessConfig
  let proxy: ProxyServer
  try {
    config = parseConfig(yaml, { baseDir: dir, source: path.join(dir, 'pgwitness.yaml') })
    proxy = await ProxyServer.start(config, pino({ level: config.log.level }, pino.destination(2)))
  } catch (err) {
    await cluster.stop()
    throw err
  }

  const token = (o: Partial<DevTokenOptions> = {}) =>
    mintDevToken(issuer.privateJwk, { subject: 'spiffe://test.local/ns/billing/sa/api', ...o })
  const clients: pg.Client[] = []

  return {
    pg: cluster,
    proxy,
    config,
    dir,
    pki,
    issuer,
    auditPath,
    appPassword,
    token,
    async client(o = {}) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: o.user ?? 'app',
        database: o.database ?? 'appdb',
        password: o.token ?? (await token()),
        ssl: o.ssl === false ? false : { rejectUnauthorized: false },
        application_name: o.applicationName ?? 'pgw-test',
      })
      c.on('error', () => undefined)
      await c.connect()
      clients.push(c)
      return c
    },
    libpqEnv(tok, o = {}) {
      return {
        ...process.env,
        PGHOST: '127.0.0.1',
        PGPORT: String(proxy.port),
        PGUSER: o.user ?? 'app',
        PGDATABASE: o.database ?? 'appdb',
        PGPASSWORD: tok,
        PGSSLMODE: o.sslmode ?? 'require',
        PGCONNECT_TIMEOUT: '10',
      }
    },
    async stop() {
      await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
      await proxy.stop()
      await cluster.stop()
    },
  }
}

/**
 * The fixture's config rewritten for a second proxy run as its own process
 * (`pgwitness serve --config FILE`, e.g. to kill it): its own port, audit
 * log and audit section additions, info-level logs (so "pgwitness listening"
 * shows). Returns the config file and the port.
 */
export async function processProxyConfig(
  f: Fixture,
  o: { name: string; auditLog: string; auditExtra?: string },
): Promise<{ configPath: string; port: number }> {
  const { freePort } = await import('../../src/dev/cluster.js')
  const port = await freePort()
  let yaml = readFileSync(path.join(f.dir, 'pgwitness.yaml'), 'utf8')
    .replace('listen: "127.0.0.1:0"', `listen: "127.0.0.1:${port}"`)
    .replace(f.auditPath, o.auditLog)
    .replace(/^log: .*$/m, 'log: { level: info }')
  if (o.auditExtra) yaml = yaml.replace(/^audit:\n/m, `audit:\n${o.auditExtra}`)
  const configPath = path.join(f.dir, `${o.name}.yaml`)
  writeFileSync(configPath, yaml)
  return { configPath, port }
}
