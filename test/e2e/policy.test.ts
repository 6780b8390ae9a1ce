/**
 * Policy v1, end to end: ordered rules map a verified identity (issuer,
 * subject glob, claim values — "contains" on array claims) to the upstream
 * roles and databases it may use. The StartupMessage user/database are the
 * requested role/database. A refusal is FATAL 28000 with an auth.failure
 * record (policy_no_match, role_not_allowed, database_not_allowed) and
 * nothing reaches PostgreSQL; an admitted session records the rule's name.
 */
import path from 'node:path'
import pino from 'pino'
import pg from 'pg'
import t, { type Test } from 'tap'
import type { AuthFailureReason } from '../../src/evidence/types.js'
import type { PolicyRule } from '../../src/config/types.js'
import { DEV_ISSUER } from '../../src/dev/tokens.js'
import { ProxyServer } from '../../src/server.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture, type Fixture } from '../helpers/proxy.js'

const BILLING = 'spiffe://test.local/ns/billing/sa/api'

/** Connections PostgreSQL has received so far (log_connections). */
function upstreamConnections(f: Pick<Fixture, 'pg'>): number {
  return f.pg.readLog().split('\n').filter((l) => l.includes('connection received:')).length
}

let appSeq = 0
function appName(tag: string): string {
  return `policy-${tag}-${++appSeq}`
}

/** What the helpers need: a fixture, or another proxy in front of a fixture's cluster. */
type Env = Pick<Fixture, 'pg' | 'auditPath' | 'client'>

let extraProxies = 0
/** Another proxy in front of f's cluster with its own policy and audit log; stopped at t's teardown. */
async function withPolicy(t: Test, f: Fixture, policy: PolicyRule[]): Promise<Env> {
  const auditPath = path.join(f.dir, 'audit', `extra-${++extraProxies}.jsonl`)
  const proxy = await ProxyServer.start({ ...f.config, policy, audit: { ...f.config.audit, log: auditPath } }, pino({ level: 'silent' }))
  const clients: pg.Client[] = []
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)))
    await proxy.stop()
    readValidAuditLog(auditPath)
  })
  return {
    pg: f.pg,
    auditPath,
    async client(o = {}) {
      const c = new pg.Client({
        host: '127.0.0.1',
        port: proxy.port,
        user: o.user ?? 'app',
        database: o.database ?? 'appdb',
        password: o.token ?? (await f.token()),
        ssl: { rejectUnauthorized: false },
        application_name: o.applicationName ?? 'pgw-test',
      })
      c.on('error', () => undefined)
      await c.connect()
      clients.push(c)
      return c
    },
  }
}

interface Conn {
  token: string
  user: string
  database: string
}

/** Connect, check who we are upstream, disconnect; returns the session.start record. */
async function expectAdmitted(t: Test, f: Env, c: Conn) {
  const app = appName('ok')
  const client = await f.client({ ...c, applicationName: app })
  const r = await client.query('select current_user as u, current_database() as d')
  t.same(r.rows, [{ u: c.user, d: c.database }], `connected as ${c.user} to ${c.database}`)
  await client.end()
  const recs = await waitForRecords(f.auditPath, (rs) =>
    recordsOfType(rs, 'session.end').some((x) => x.session.application_name === app))
  readValidAuditLog(f.auditPath)
  const start = recordsOfType(recs, 'session.start').find((x) => x.session.application_name === app)!
  t.match(start.upstream, { role: c.user, database: c.database })
  return start
}

/** Connect and expect a policy refusal; returns the auth.failure record. */
async function expectDenied(t: Test, f: Env, c: Conn, reason: AuthFailureReason, message: RegExp) {
  const app = appName(reason)
  const before = upstreamConnections(f)
  const err = await f.client({ ...c, applicationName: app }).then(
    async (cl) => {
      await cl.end()
      return null
    },
    (e: pg.DatabaseError) => e,
  )
  if (!err) {
    t.fail(`admitted ${c.user}@${c.database}`)
    return undefined
  }
  t.equal(err.severity, 'FATAL')
  t.equal(err.code, '28000', 'SQLSTATE 28000 (not authorized)')
  t.match(err.message, message, `message: ${err.message}`)
  t.notOk(err.message.includes(c.token), 'the message does not contain the token')
  const recs = await waitForRecords(f.auditPath, (rs) =>
    recordsOfType(rs, 'auth.failure').some((r) => r.requested.application_name === app))
  const rec = recordsOfType(recs, 'auth.failure').find((r) => r.requested.application_name === app)!
  t.equal(rec.reason, reason, `reason ${reason}`)
  t.equal(rec.method, 'jwt')
  t.same(rec.requested, { user: c.user, database: c.database, application_name: app })
  t.notOk(rec.detail.includes(c.token))
  readValidAuditLog(f.auditPath)
  t.equal(upstreamConnections(f), before, 'nothing reached PostgreSQL')
  return rec
}

t.test('policy rules of the default fixture', async (t) => {
  const f = await startFixture({ pg: { settings: { log_connections: 'on' } } })
  t.teardown(() => f.stop())
  t.teardown(() => {
    readValidAuditLog(f.auditPath)
  })

  t.test('a billing subject may use role app on appdb (rule billing-app)', async (t) => {
    const before = upstreamConnections(f)
    const start = await expectAdmitted(t, f, { token: await f.token(), user: 'app', database: 'appdb' })
    t.equal(start.identity.policy_rule, 'billing-app')
    t.equal(start.identity.subject, BILLING)
    t.equal(upstreamConnections(f), before + 1, 'log_connections sees admitted sessions')
  })

  t.test('a subject outside the glob matches no rule', async (t) => {
    for (const subject of [
      'spiffe://test.local/ns/payments/sa/api',
      'spiffe://test.local/ns/billing', // the glob needs the trailing slash
      'spiffe://test.local/ns/billingx/sa/api',
      'spiffe://other.local/ns/billing/sa/api',
      'xspiffe://test.local/ns/billing/sa/api',
    ]) {
      const token = await f.token({ subject })
      const rec = await expectDenied(t, f, { token, user: 'app', database: 'appdb' }, 'policy_no_match', /access denied|no policy rule/)
      t.equal(rec?.identity?.subject, subject, 'the verified subject is recorded')
      t.equal(rec?.identity?.policy_rule, null)
    }
  })

  t.test('a billing subject asking for role postgres gets role_not_allowed', async (t) => {
    await expectDenied(t, f, { token: await f.token(), user: 'postgres', database: 'appdb' }, 'role_not_allowed', /role "postgres"/)
  })

  t.test('a billing subject asking for a role that does not exist gets role_not_allowed', async (t) => {
    await expectDenied(t, f, { token: await f.token(), user: 'no_such_role', database: 'appdb' }, 'role_not_allowed', /role/)
  })

  t.test('a billing subject asking for database postgres as app gets database_not_allowed', async (t) => {
    await expectDenied(t, f, { token: await f.token(), user: 'app', database: 'postgres' }, 'database_not_allowed', /database "postgres"/)
  })

  t.test('groups containing dba may connect as postgres to postgres (rule dba)', async (t) => {
    const token = await f.token({ subject: 'user:alice@example.com', claims: { groups: ['dev', 'dba'] } })
    const start = await expectAdmitted(t, f, { token, user: 'postgres', database: 'postgres' })
    t.equal(start.identity.policy_rule, 'dba')
    t.equal(start.identity.subject, 'user:alice@example.com')
    // ... and any other role/database.
    const s2 = await expectAdmitted(t, f, { token, user: 'app', database: 'postgres' })
    t.equal(s2.identity.policy_rule, 'dba')
  })

  t.test('a scalar groups claim equal to dba also matches', async (t) => {
    const token = await f.token({ subject: 'user:bob@example.com', claims: { groups: 'dba' } })
    const start = await expectAdmitted(t, f, { token, user: 'postgres', database: 'postgres' })
    t.equal(start.identity.policy_rule, 'dba')
  })

  t.test('groups that do not contain dba exactly do not match', async (t) => {
    for (const groups of [['dev'], ['dbas'], ['DBA'], 'dba,dev', [['dba']], []]) {
      const token = await f.token({ subject: 'user:mallory@example.com', claims: { groups } })
      await expectDenied(t, f, { token, user: 'postgres', database: 'postgres' }, 'policy_no_match', /no policy rule/)
    }
  })

  t.test('a billing subject in group dba is admitted by the first rule that grants what it asks', async (t) => {
    const token = await f.token({ claims: { groups: ['dba'] } })
    const s1 = await expectAdmitted(t, f, { token, user: 'app', database: 'appdb' })
    t.equal(s1.identity.policy_rule, 'billing-app', 'billing-app comes first')
    const s2 = await expectAdmitted(t, f, { token, user: 'postgres', database: 'postgres' })
    t.equal(s2.identity.policy_rule, 'dba', 'billing-app does not grant postgres; dba does')
  })
})

t.test('ordered rules: the first matching rule wins', async (t) => {
  const policy = (first: string, second: string) => `policy:
  - name: ${first}
    match: { issuer: ${DEV_ISSUER}, subject: "spiffe://test.local/ns/billing/*" }
    roles: [app]
    databases: [appdb]
  - name: ${second}
    match: { claims: { team: billing } }
    roles: [app]
    databases: [appdb]
  - name: team-wide
    match: { claims: { team: billing } }
    roles: [app, postgres]
    databases: ["*"]`
  const f = await startFixture({ policyYaml: policy('by-subject', 'by-team'), pg: { settings: { log_connections: 'on' } } })
  t.teardown(() => f.stop())
  const token = await f.token({ claims: { team: 'billing' } })

  const s1 = await expectAdmitted(t, f, { token, user: 'app', database: 'appdb' })
  t.equal(s1.identity.policy_rule, 'by-subject', 'both rules match: the first one is recorded')

  const other = await f.token({ subject: 'spiffe://test.local/ns/ops/sa/x', claims: { team: 'billing' } })
  const s2 = await expectAdmitted(t, f, { token: other, user: 'app', database: 'appdb' })
  t.equal(s2.identity.policy_rule, 'by-team', 'only the second matches')

  const s3 = await expectAdmitted(t, f, { token, user: 'postgres', database: 'postgres' })
  t.equal(s3.identity.policy_rule, 'team-wide', 'rules that match but do not grant the request are passed over')

  await expectDenied(t, f, { token: await f.token({ claims: { team: 'payments' } }), user: 'postgres', database: 'appdb' },
    'role_not_allowed', /role "postgres"/)
  readValidAuditLog(f.auditPath)

  // Other proxies in front of the same cluster, differing only in their
  // policy (a cluster per policy would make this file slow).
  t.test('the first two rules swapped: by-team is recorded', async (t) => {
    const [a, b, ...rest] = f.config.policy
    const g = await withPolicy(t, f, [b!, a!, ...rest])
    const s = await expectAdmitted(t, g, { token, user: 'app', database: 'appdb' })
    t.equal(s.identity.policy_rule, 'by-team')
  })

  t.test('an empty policy denies everyone', async (t) => {
    const g = await withPolicy(t, f, [])
    await expectDenied(t, g, { token: await f.token({ claims: { groups: ['dba'], team: 'billing' } }), user: 'app', database: 'appdb' },
      'policy_no_match', /no policy rule/)
  })
})
