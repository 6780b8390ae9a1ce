/**
 * Replication connections (issue 15 part 3), the pure parts: the startup
 * `replication` value as PostgreSQL reads it, which Query texts are
 * replication commands, the `policy[].replication` key, the policy decision,
 * and the tracker's one record per replication command however many results
 * the walsender sends for it.
 */
import t from 'tap'
import { ConfigError } from '../../src/config/errors.js'
import { parseReplication } from '../../src/config/parse-replication.js'
import { Reader } from '../../src/config/reader.js'
import type { PolicyRule } from '../../src/config/types.js'
import type { WorkloadIdentity } from '../../src/identity/identity.js'
import { evaluateAccess } from '../../src/policy/access.js'
import { replicationCommandOf, replicationModeOf, replicationStatement } from '../../src/replication/commands.js'
import { HandshakeError } from '../../src/session/handshake-error.js'
import { StatementTracker, type ObservedStatement } from '../../src/session/statement-tracker.js'
import { StreamCounter } from '../../src/replication/stream-counts.js'

t.test('the startup replication value, as PostgreSQL reads it', async (t) => {
  t.equal(replicationModeOf(undefined), null, 'absent: an ordinary session')
  t.equal(replicationModeOf('database'), 'logical')
  for (const v of ['true', 'on', 'yes', '1', 'TRUE', 't', 'tr', 'y']) t.equal(replicationModeOf(v), 'physical', v)
  for (const v of ['false', 'off', 'no', '0', 'f', 'of', 'n']) t.equal(replicationModeOf(v), null, `${v}: not a walsender`)
  for (const v of ['bogus', '', 'o', 'Database', ' true', '2']) {
    const err = (() => {
      try {
        replicationModeOf(v)
      } catch (e) {
        return e
      }
      return null
    })()
    t.ok(err instanceof HandshakeError, `${JSON.stringify(v)} refused`)
    t.equal((err as HandshakeError).code, '22023')
    t.equal((err as HandshakeError).message, `invalid value for parameter "replication": "${v}"`)
  }
})

t.test('replication commands are recognised by their first keyword; anything else is SQL', async (t) => {
  t.equal(replicationCommandOf('IDENTIFY_SYSTEM'), 'IDENTIFY_SYSTEM')
  t.equal(replicationCommandOf('  \n\tIDENTIFY_SYSTEM;'), 'IDENTIFY_SYSTEM', 'leading whitespace skipped, as the replication scanner does')
  t.equal(replicationCommandOf('CREATE_REPLICATION_SLOT "s" LOGICAL "test_decoding"'), 'CREATE_REPLICATION_SLOT')
  t.equal(replicationCommandOf('START_REPLICATION SLOT "s" LOGICAL 0/0'), 'START_REPLICATION')
  t.equal(replicationCommandOf('BASE_BACKUP ( LABEL \'x\' )'), 'BASE_BACKUP')
  t.equal(replicationCommandOf('SHOW wal_segment_size'), 'SHOW')
  for (const c of ['DROP_REPLICATION_SLOT s', 'READ_REPLICATION_SLOT s', 'TIMELINE_HISTORY 2']) t.equal(replicationCommandOf(c), c.split(' ')[0])
  // PostgreSQL 15 runs these as SQL on a replication=database connection (checked against a server: its
  // log_replication_commands logs none of them): the keywords are upper case only, and comments are not skipped.
  for (const sql of ['SELECT 1', 'CREATE TABLE t (a int)', '', 'IDENTIFY_SYSTEMS', 'IDENTIFY_SYSTEM1', '/* c */ IDENTIFY_SYSTEM', 'START_REPLICATIONX', 'identify_system', 'Show wal_segment_size', 'show x']) {
    t.equal(replicationCommandOf(sql), null, `SQL: ${JSON.stringify(sql)}`)
  }
  t.same(replicationStatement('IDENTIFY_SYSTEM', 'IDENTIFY_SYSTEM'), {
    text: 'IDENTIFY_SYSTEM', command: 'IDENTIFY_SYSTEM', node: null, classes: ['REPLICATION'], objects: [], governedSetting: false,
  })
})

t.test('policy[].replication: logical, physical, or both; anything else is a config error', async (t) => {
  const r = new Reader('/', {})
  const path = ['policy', 0, 'replication']
  t.same(parseReplication(r, undefined, path), [], 'absent: no replication')
  t.same(parseReplication(r, 'logical', path), ['logical'])
  t.same(parseReplication(r, ['physical', 'logical', 'physical'], path), ['physical', 'logical'])
  const problem = (v: unknown) => {
    try {
      parseReplication(r, v, path)
    } catch (e) {
      return e instanceof ConfigError ? e.message : `not a ConfigError: ${String(e)}`
    }
    return 'accepted'
  }
  t.equal(problem('database'), 'config: policy[0].replication: must be logical or physical (got "database")')
  t.equal(problem(['logical', 'true']), 'config: policy[0].replication[1]: must be logical or physical (got "true")')
  t.match(problem([]), /^config: policy\[0\]\.replication: /, 'an empty list is refused')
  t.match(problem(true), /^config: policy\[0\]\.replication: /)
})

t.test('a replication connection needs a rule that allows its kind', async (t) => {
  const identity: WorkloadIdentity = {
    method: 'jwt', subject: 'spiffe://x/ns/cdc/sa/a', issuer: 'https://idp', audience: ['pgwitness'], tokenId: null, expiresAt: null,
    spiffeId: null, certSha256: null, recordedClaims: {}, claims: {},
  }
  const rule = (name: string, replication?: PolicyRule['replication'], databases = ['appdb']): PolicyRule => ({
    name, match: { method: null, issuer: null, subject: null, claims: {}, certSha256: null }, roles: ['app'], databases, requireTokenBinding: false, requireApproval: false, statements: null,
    ...(replication ? { replication } : {}),
  })
  const ask = (rules: PolicyRule[], replication: 'logical' | 'physical' | null, database = 'appdb') =>
    evaluateAccess(rules, identity, { role: 'app', database, replication })

  const plain = ask([rule('app')], 'logical')
  t.same(plain.allowed ? null : [plain.reason, plain.detail], ['replication_not_allowed', 'no policy rule allows logical replication connections for role "app" (policy[].replication)'])
  t.equal(ask([rule('app')], null).allowed, true, 'an ordinary session needs nothing more')
  const logicalOnly = ask([rule('decoder', ['logical'])], 'physical')
  t.equal(logicalOnly.allowed ? null : logicalOnly.reason, 'replication_not_allowed', 'logical does not imply physical')
  t.equal(ask([rule('wal', ['physical'])], 'logical').allowed, false, 'nor physical logical')
  const first = ask([rule('app'), rule('cdc', ['logical'])], 'logical')
  t.equal(first.allowed && first.rule.name, 'cdc', 'the first rule that allows it admits it')
  t.equal(ask([rule('cdc', ['logical'])], 'logical', 'other').allowed, false, 'a logical walsender is confined to the rule\'s databases')
  const physical = ask([rule('wal', ['physical'])], 'physical', 'replication')
  t.equal(physical.allowed && physical.rule.name, 'wal', 'a physical walsender serves the whole cluster: the database it names is not checked')
  const db = ask([rule('cdc', ['logical'])], 'logical', 'other')
  t.equal(db.allowed ? null : db.reason, 'database_not_allowed')
})

t.test('the tracker records one statement per replication command, whatever results the walsender sends', async (t) => {
  const out: ObservedStatement[] = []
  const tr = new StatementTracker({ maxStatementBytes: 65536, onStatement: (s) => out.push(s) })
  const complete = (tag: string) => tr.backend(0x43, Buffer.from(tag + '\0'))
  const ready = () => tr.backend(0x5a, Buffer.from('I'))
  const text = "BASE_BACKUP ( LABEL 'pg_basebackup base backup', CHECKPOINT 'fast' )"
  tr.query(text, false, { replication: replicationStatement(text, 'BASE_BACKUP') })
  // PostgreSQL 15: the start position, the tablespaces, the archive as COPY, the end position, then its own tag.
  tr.backend(0x54, null); tr.backend(0x44, null); complete('SELECT')
  tr.backend(0x54, null); tr.backend(0x44, null); complete('SELECT')
  tr.backend(0x48, null); for (let i = 0; i < 5; i++) tr.backend(0x64, null); tr.backend(0x63, null)
  tr.backend(0x54, null); tr.backend(0x44, null); complete('SELECT')
  complete('BASE_BACKUP')
  t.equal(out.length, 0, 'nothing before ReadyForQuery')
  ready()
  t.same(out.map((s) => [s.command, s.classes, s.status, s.commandTag, s.rows, s.text, s.split]), [
    ['BASE_BACKUP', ['REPLICATION'], 'ok', 'BASE_BACKUP', 3, text, 'parser'],
  ], 'one record: the last tag, the rows of every result set, the text as sent (not a server split)')

  out.length = 0
  tr.query('TIMELINE_HISTORY 2', false, { replication: replicationStatement('TIMELINE_HISTORY 2', 'TIMELINE_HISTORY') })
  tr.error({ code: '58P01', message: 'could not open file "pg_wal/00000002.history"' })
  ready()
  t.same(out.map((s) => [s.command, s.status, s.sqlstate]), [['TIMELINE_HISTORY', 'error', '58P01']])

  out.length = 0
  tr.query('START_REPLICATION 0/0', false, { replication: replicationStatement('START_REPLICATION 0/0', 'START_REPLICATION') })
  tr.backend(0x57, null)
  for (let i = 0; i < 3; i++) tr.backend(0x64, null)
  t.equal(tr.pending, 1, 'a stream in progress is a statement in flight')
  tr.abandon()
  t.same(out.map((s) => [s.command, s.status]), [['START_REPLICATION', 'unknown']], 'a stream the client walked away from has no outcome')
})

t.test('CopyData is counted each way, payload bytes only', async (t) => {
  const c = new StreamCounter()
  c.server(100)
  c.server(0)
  c.client(33)
  t.same(c.counts, { from_client: { messages: 1, bytes: 33 }, from_server: { messages: 2, bytes: 100 } })
})
