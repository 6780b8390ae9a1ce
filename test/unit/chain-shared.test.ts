/**
 * Sealing with shared members (a session's, serialized once) gives exactly
 * the line and hash of sealing the whole record: for any members, including
 * names in both parts, `chain` among them, and data that is not I-JSON.
 */
import fc from 'fast-check'
import t from 'tap'
import { AuditChain, recordPartsWith, recordParts, shareMembers } from '../../src/ledger/chain.js'
import type { AuditRecordBody } from '../../src/evidence/types.js'
import { sharedSessionMembers, statementOwnMembers, transactionEndOwnMembers, transactionEndRecord, type SessionContext } from '../../src/evidence/records.js'
import type { ObservedStatement, TransactionEnd } from '../../src/evidence/observed.js'
import { statementOwnMemberTexts } from '../../src/ledger/statement-members.js'

const names = fc.oneof(fc.constantFrom('chain', 'id', 'identity', 'session', 'statement', 'time', 'type', 'approval', 'b', 'z', '10', '9', 'ünï'), fc.string({ maxLength: 6 }))
const values = fc.jsonValue({ maxDepth: 2 })
const members = fc.dictionary(names, values, { maxKeys: 8 })

t.test('recordPartsWith(shared, own) is recordParts({...shared, ...own})', async (t) => {
  fc.assert(fc.property(members, members, (shared, own) => {
    const s = shareMembers(shared)!
    const a = recordPartsWith(s, own)
    const b = recordParts({ ...shared, ...own })
    return a.before === b.before && a.after === b.after
  }), { numRuns: 3000 })
  t.pass('3000 random member sets')
})

t.test('seal(own, shared) writes the line and hash of seal({...shared, ...own}), sanitizing like it', async (t) => {
  const lone = '\ud800'
  const cases: Array<[Record<string, unknown>, Record<string, unknown>]> = [
    [{ identity: { subject: 'a' }, session: { id: 's' } }, { type: 'statement', id: '1', statement: { text: 'SELECT 1' } }],
    [{ identity: { subject: 'a' } }, { identity: { subject: 'own wins' }, type: 'x' }],
    [{ identity: { subject: 'a' } }, { type: 'x', bad: lone, n: Number.NaN }],
  ]
  for (const [shared, own] of cases) {
    const one = new AuditChain()
    const two = new AuditChain()
    const a = one.seal(own, shareMembers(shared))
    const b = two.seal({ ...shared, ...own } as unknown as AuditRecordBody)
    t.equal(a.line, b.line)
    t.equal(a.sanitized, b.sanitized)
    t.same(a.record, b.record)
  }
  t.equal(shareMembers({ claims: { x: lone } }), null, 'shared members that are not I-JSON are not shared (their records take the full path)')
})

t.test('a transaction.end sealed from its own members and the session\'s shared ones is transactionEndRecord\'s line', async (t) => {
  const c: SessionContext = {
    proxy: { instance: 'pgw-test', version: '0.1.0' },
    connection: { id: 'c-1', client: { address: '10.0.0.7', port: 53122 }, tls: null },
    session: { id: '0193-session-1', started_at: '2026-11-26T05:38:42.123456Z', application_name: 'wörker "α"' },
    identity: {
      method: 'jwt', subject: 'spiffe://test.local/ns/billing/sa/api', issuer: 'https://issuer.test', audience: ['pgwitness'],
      token_id: null, token_expires_at: null, spiffe_id: null, cert_sha256: null, claims: { team: 'payments' }, policy_rule: 'billing-app',
    },
    upstream: { host: '127.0.0.1', port: 5432, database: 'appdb', role: 'app', backend_pid: 4711, server_session_id: '6745a1b2.1267' },
    approval: { id: 'apr-1', ticket: 'CHG-1', approver: 'bob', issuer: 'https://approvals.test', expires_at: '2026-11-26T06:00:00Z' },
  }
  const ends: TransactionEnd[] = [
    { number: 3, outcome: 'committed', cause: 'commit', gid: null, firstSeq: 4, lastSeq: 9, undone: [] },
    { number: 4, outcome: 'rolled_back', cause: 'error', gid: null, firstSeq: 10, lastSeq: 12, undone: [{ first: 11, last: 12, savepoint: 'sp "1"' }] },
    { number: 5, outcome: 'prepared', cause: 'prepare', gid: 'tx-ü', firstSeq: 13, lastSeq: 13, undone: [] },
  ]
  for (const e of ends) {
    const own = transactionEndOwnMembers(e)
    const whole = { ...transactionEndRecord(c, e), id: own.id, time: own.time }
    const a = new AuditChain().seal(own, shareMembers(sharedSessionMembers(c) as Record<string, unknown>))
    const b = new AuditChain().seal(whole as unknown as AuditRecordBody)
    t.equal(a.line, b.line, `transaction ${e.number}`)
  }
})

t.test('seal(own, shared, statementOwnMemberTexts) is seal({...shared, ...own}), and a record not I-JSON takes the sanitizing path', async (t) => {
  const shared = { identity: { subject: 'a' }, session: { id: 's' } }
  const s: ObservedStatement = {
    key: 0, seq: 3, protocol: 'simple', text: 'SELECT 1', textTruncated: false, parameters: null, preparedName: null, portal: null,
    functionOid: null, command: 'SELECT', classes: ['READ'], objects: [], node: null, split: 'parser', inTransaction: false,
    transaction: { number: 2, kind: 'autocommit' }, governedSettingChanged: false, status: 'ok', commandTag: 'SELECT 1', rows: 1,
    suspended: false, portalRows: null, sqlstate: null, message: null, startedAtUs: 1764000000000000, durationUs: 12, textOrigin: null, policy: null,
  }
  for (const text of ['SELECT 1', 'SELECT \'\ud800\'']) {
    const own = statementOwnMembers({ ...s, text })
    const a = new AuditChain().seal(own, shareMembers(shared), statementOwnMemberTexts)
    const b = new AuditChain().seal({ ...shared, ...own } as unknown as AuditRecordBody)
    t.equal(a.line, b.line, JSON.stringify(text))
    t.equal(a.sanitized, b.sanitized)
  }
  t.ok(new AuditChain().seal(statementOwnMembers({ ...s, text: '\ud800' }), shareMembers(shared), statementOwnMemberTexts).sanitized, 'a lone surrogate is sanitized, not refused')
})
