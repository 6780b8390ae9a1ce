/**
 * The strict-durability intent journal's file format: compact intents (the
 * session's shared members once, each intent its own members) read back to
 * the same records, and a journal of the earlier format (whole records) is
 * still recovered.
 */
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import t from 'tap'
import { canonicalize } from '../../src/ledger/canonical-json.js'
import { IntentJournal, intentRecord, type IntentSession, type StatementIntent } from '../../src/ledger/intent-journal.js'
import { sharedSessionMembers, statementOwnMembers, statementRecord, unseenStatementOwnMembers, type SessionContext } from '../../src/evidence/records.js'
import type { ObservedStatement } from '../../src/evidence/observed.js'

const silent = pino({ level: 'silent' })

function context(n: number, approval = false): SessionContext {
  return {
    proxy: { instance: 'pgw-test', version: '0.1.0' },
    connection: { id: `c-${n}`, client: { address: '10.0.0.7', port: 53122 }, tls: null },
    session: { id: `0193-session-${n}`, started_at: '2026-11-26T05:38:42.123456Z', application_name: 'wörker "α" 😀' },
    identity: {
      method: 'jwt', subject: `spiffe://test.local/ns/billing/sa/api-${n}`, issuer: 'https://issuer.test', audience: ['pgwitness'],
      token_id: null, token_expires_at: null, spiffe_id: null, cert_sha256: null, claims: { team: 'payments\n"core"' }, policy_rule: 'billing-app',
    },
    upstream: { host: '127.0.0.1', port: 5432, database: 'appdb', role: 'app', backend_pid: 4711, server_session_id: '6745a1b2.1267' },
    ...(approval ? { approval: { id: 'apr-1', ticket: 'CHG-1', approver: 'bob', issuer: 'https://approvals.test', expires_at: '2026-11-26T06:00:00Z' } } : {}),
  }
}

function observed(i: number): ObservedStatement {
  return {
    key: i, protocol: 'extended', text: `UPDATE t SET v = $1 WHERE id = ${i}`, textTruncated: false,
    parameters: [{ format: 'text', value: 'x\u0000y' }, null], preparedName: 's1', portal: '', functionOid: null,
    command: 'UPDATE', classes: ['WRITE'], objects: [{ type: 'table', schema: 'public', name: 't' }], node: null, seq: i,
    split: i % 2 === 0 ? 'server' : 'parser', governedSettingChanged: i % 3 === 0, textOrigin: i % 2 === 0 ? { encoding: 'LATIN9', raw: 'AAE=' } : null,
    policy: i % 2 === 0 ? { would_deny: [{ rule: 'r', statement_rule: 'no-writes', matched: 'class WRITE' }] } : null,
    inTransaction: false, transaction: { number: 0, kind: 'unknown' }, suspended: i % 2 === 0, portalRows: i % 2 === 0 ? 7 : null,
    status: 'unknown', commandTag: null, rows: null, sqlstate: null, message: 'not seen', startedAtUs: 1_795_000_000_000_000 + i, durationUs: null,
  } as ObservedStatement
}

function intentOf(c: SessionContext, session: IntentSession, i: number): StatementIntent {
  const record = statementOwnMembers(observed(i))
  return { id: record.id, afterSeq: 10 + i, session, record }
}

const sessionOf = (c: SessionContext): IntentSession => ({ key: c.session.id, json: JSON.stringify(sharedSessionMembers(c)) })

t.test('a statement record is its session’s shared members plus its own, member for member', async (t) => {
  for (const approval of [false, true]) {
    const c = context(1, approval)
    for (let i = 1; i <= 6; i++) {
      const own = statementOwnMembers(observed(i))
      const whole = { ...statementRecord(c, observed(i)), id: own.id, time: own.time }
      t.equal(canonicalize({ ...sharedSessionMembers(c), ...own }), canonicalize(whole), `statement ${i}, approval ${approval}`)
    }
  }
})

t.test('compact intents: one session line per session, and each intent reads back as its whole record', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-intents-'))
  const file = path.join(dir, 'audit.intents')
  const { journal } = await IntentJournal.open(file, silent)
  const a = context(1)
  const b = context(2, true)
  const sa = sessionOf(a)
  const sb = sessionOf(b)
  const intents = [intentOf(a, sa, 1), intentOf(b, sb, 2), intentOf(a, sa, 3)]
  await journal.commit(intents.slice(0, 2))
  await journal.commit(intents.slice(2))
  await journal.close()

  const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean)
  t.equal(lines.length, 5, 'two session lines and three intent lines')
  t.equal(lines.filter((l) => l.startsWith('{"session":')).length, 2, 'each session written once')
  t.ok(lines.every((l) => !l.includes('"identity"') || l.startsWith('{"session":')), 'an intent line does not repeat the identity')

  const { journal: again, previous } = await IntentJournal.open(file, silent)
  await again.close()
  t.same(previous.map((p) => p.id), intents.map((i) => i.id))
  for (const [k, p] of previous.entries()) {
    const c = k === 1 ? b : a
    const want = { ...statementRecord(c, observed(k + 1)), id: intents[k]!.id, time: intents[k]!.record['time'] }
    t.equal(canonicalize(intentRecord(p)), canonicalize(want), `intent ${k + 1} is its whole record`)
  }
})

t.test('a journal of the earlier format (whole records per line) is recovered; a torn or orphaned line is skipped', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgw-intents-'))
  const file = path.join(dir, 'audit.intents')
  const c = context(3)
  const old = { ...statementRecord(c, observed(1)) }
  writeFileSync(file, JSON.stringify({ id: old.id, after_seq: 4, record: old }) + '\n')
  // An intent whose session line never made it, and a torn last line.
  appendFileSync(file, JSON.stringify({ id: 'orphan', after_seq: 5, session: 'nowhere', record: { id: 'orphan' } }) + '\n')
  appendFileSync(file, '{"id":"torn","after_seq":6,"sess')
  const { journal, previous } = await IntentJournal.open(file, silent)
  await journal.close()
  t.equal(previous.length, 1)
  t.equal(previous[0]!.session, null)
  t.equal(canonicalize(intentRecord(previous[0]!)), canonicalize(old))
})

t.test('an intent’s own members are those of the statement with its outcome unseen', async (t) => {
  for (let i = 1; i <= 6; i++) {
    const s = observed(i)
    const tx = { number: 0, kind: 'unknown' } as const
    const unseen = unseenStatementOwnMembers(s, 40 + i, tx, 'not seen')
    const spelled = statementOwnMembers({
      ...s, seq: 40 + i, inTransaction: false, transaction: tx, status: 'unknown', commandTag: null, rows: null,
      suspended: false, portalRows: null, sqlstate: null, message: 'not seen', durationUs: null,
    })
    t.equal(canonicalize({ ...unseen, id: '', time: '' }), canonicalize({ ...spelled, id: '', time: '' }), `statement ${i}`)
  }
})
