/** AuthFailureSummarizer: keys, windows, keep_first 0, window 0, and the bound on open windows. */
import t from 'tap'
import { AuthFailureSummarizer } from '../../src/evidence/auth-failure-summary.js'
import type { AuditRecordBody, AuthFailureRecord, Unchained } from '../../src/evidence/types.js'
import { uuidv7 } from '../../src/util/ids.js'
import { rfc3339Micros } from '../../src/util/time.js'

type Failure = Unchained<AuthFailureRecord>

function failure(address: string, reason: Failure['reason'] = 'token_expired', subject: string | null = null): Failure {
  return {
    schema: 'pgwitness.audit/v1', id: uuidv7(), time: rfc3339Micros(), type: 'auth.failure',
    proxy: { instance: 'unit', version: '0' },
    connection: { id: uuidv7(), client: { address, port: 1 }, tls: null },
    method: 'jwt', reason, detail: 'expired',
    requested: { user: 'app', database: 'db', application_name: null },
    identity: subject === null ? null : { subject, issuer: 'https://idp' },
  }
}

function sink() {
  const written: Failure[] = []
  return { written, audit: { append: (r: AuditRecordBody) => (written.push(r as Failure), written.length) } }
}
const total = (rs: Failure[]) => rs.reduce((n, r) => n + (r.count ?? 1), 0)

t.test('keys: address, reason and subject each make their own; flush writes every due summary', async (t) => {
  const { written, audit } = sink()
  const s = new AuthFailureSummarizer(audit, { windowMs: 60_000, keepFirst: 2 })
  const inputs = [
    ...Array.from({ length: 5 }, () => failure('10.0.0.1')),
    ...Array.from({ length: 3 }, () => failure('10.0.0.2')),
    ...Array.from({ length: 4 }, () => failure('10.0.0.1', 'policy_no_match', 'alice')),
    ...Array.from({ length: 2 }, () => failure('10.0.0.1', 'policy_no_match', 'bob')),
  ]
  inputs.forEach((f) => s.record(f))
  t.equal(written.length, 8, 'two records per key')
  t.equal(s.pending, 3 + 1 + 2)
  s.flush()
  t.equal(s.pending, 0)
  const summaries = written.filter((r) => r.count !== undefined)
  t.same(summaries.map((r) => [r.connection!.client.address, r.reason, r.identity?.subject ?? null, r.count]), [
    ['10.0.0.1', 'token_expired', null, 3], ['10.0.0.2', 'token_expired', null, 1], ['10.0.0.1', 'policy_no_match', 'alice', 2],
  ], 'a summary per key that had more than keep_first; none for bob')
  t.equal(total(written), inputs.length, 'exact')
})

t.test('keep_first 0 counts every failure; window 0 writes every failure', async (t) => {
  const a = sink()
  const counting = new AuthFailureSummarizer(a.audit, { windowMs: 60_000, keepFirst: 0 })
  for (let i = 0; i < 4; i++) counting.record(failure('10.0.0.1'))
  t.equal(a.written.length, 0)
  counting.flush()
  t.match(a.written, [{ count: 4 }])
  const b = sink()
  const off = new AuthFailureSummarizer(b.audit, { windowMs: 0, keepFirst: 0 })
  for (let i = 0; i < 4; i++) off.record(failure('10.0.0.1'))
  t.equal(b.written.length, 4)
  t.ok(b.written.every((r) => r.count === undefined))
})

t.test('a window closes by itself; the next failure opens a new one', async (t) => {
  const { written, audit } = sink()
  const s = new AuthFailureSummarizer(audit, { windowMs: 50, keepFirst: 1 })
  for (let i = 0; i < 3; i++) s.record(failure('10.0.0.1'))
  await new Promise((r) => setTimeout(r, 120))
  t.match(written.at(-1), { count: 2 })
  s.record(failure('10.0.0.1'))
  t.equal(written.at(-1)!.count, undefined, 'a record again')
  s.flush()
})

t.test('beyond 10,000 open windows, failures of new keys are written one by one', async (t) => {
  const { written, audit } = sink()
  const s = new AuthFailureSummarizer(audit, { windowMs: 60_000, keepFirst: 0 })
  for (let i = 0; i < 10_000; i++) s.record(failure(`10.1.${i >> 8}.${i & 255}`))
  t.equal(written.length, 0)
  s.record(failure('10.2.0.1'))
  s.record(failure('10.2.0.1'))
  t.equal(written.length, 2, 'nothing is lost when no window can be opened')
  s.flush()
  t.equal(total(written), 10_002)
})
