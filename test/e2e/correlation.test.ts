import { existsSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { findPgBinDir } from '../harness/postgres.js'
import { startFixture } from '../helpers/proxy.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { execFileSync } from 'node:child_process'

/** pgaudit.so in the server's library folder, or null. */
function pgauditLibrary(): string | null {
  try {
    const pkglib = execFileSync(path.join(findPgBinDir(), 'pg_config'), ['--pkglibdir'], { encoding: 'utf8' }).trim()
    return existsSync(path.join(pkglib, 'pgaudit.so')) ? pkglib : null
  } catch {
    const guess = path.join(path.dirname(findPgBinDir()), 'lib')
    return existsSync(path.join(guess, 'pgaudit.so')) ? guess : null
  }
}

/** log_line_prefix '%m [%p] %c %u@%d ': the %c field. */
const SESSION_ID = /^\S+ \S+ \S+ \[\d+\] ([0-9a-f]+\.[0-9a-f]+) /

const skip = pgauditLibrary() === null
  ? 'pgaudit is not installed for this PostgreSQL (Debian package postgresql-15-pgaudit); .ci/run installs it'
  : false

// The SOC's join: every pgaudit line carries %c in its prefix; the proxy's
// records carry the same value as upstream.server_session_id.
t.test('every pgaudit line joins to exactly one governed session and identity', { skip }, async (t) => {
  const f = await startFixture({
    pg: { settings: { shared_preload_libraries: 'pgaudit', 'pgaudit.log': 'all', 'pgaudit.log_parameter': 'on', log_line_prefix: "'%m [%p] %c %u@%d '" } },
  })
  t.teardown(() => f.stop())
  // Lines before this point come from the fixture's own setup (direct superuser connections).
  const logStart = f.pg.readLog().length
  const alice = await f.client({ user: 'postgres', database: 'postgres', token: await f.token({ subject: 'alice@corp', claims: { groups: ['dba'] } }) })
  const api = await f.client({ token: await f.token({ subject: 'spiffe://test.local/ns/billing/sa/api' }) })
  await alice.query('create table if not exists audit_me(a int)')
  await api.query('create table if not exists ledger(id int, amount int)')
  await api.query('insert into ledger values ($1, $2)', [1, 100])
  await alice.query('insert into audit_me values (1); select * from audit_me')
  await api.query('select sum(amount) from ledger')
  await alice.end()
  await api.end()

  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').length === 2)
  readValidAuditLog(f.auditPath)
  const sessions = new Map(recordsOfType(recs, 'session.start').map((s) => [s.upstream.server_session_id, s]))
  t.equal(sessions.size, 2, 'two governed sessions, two server sessions')

  const audit = f.pg.readLog().slice(logStart).split('\n').filter((l) => l.includes('AUDIT: SESSION,'))
  t.ok(audit.length >= 6, `pgaudit wrote lines (${audit.length})`)
  const subjects = new Set<string>()
  for (const line of audit) {
    const m = SESSION_ID.exec(line)
    t.ok(m, `pgaudit line has a %c session id: ${line}`)
    const s = m && sessions.get(m[1]!)
    t.ok(s, `joins to a governed session: ${line}`)
    if (s) subjects.add(s.identity.subject)
  }
  t.same([...subjects].sort(), ['alice@corp', 'spiffe://test.local/ns/billing/sa/api'])
  // A specific statement: the INSERT into ledger is attributed to the workload that ran it.
  const ledgerInsert = audit.find((l) => /WRITE,INSERT,.*ledger/i.test(l))!
  const sid = SESSION_ID.exec(ledgerInsert)![1]!
  t.equal(sessions.get(sid)!.identity.subject, 'spiffe://test.local/ns/billing/sa/api')
})
