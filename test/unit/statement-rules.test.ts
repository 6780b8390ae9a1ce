/**
 * Statement rules on statements as the proxy's own split classifies them
 * (libpg-query), so the selectors are tested against real classifications.
 */
import t from 'tap'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import type { StatementRules } from '../../src/config/types.js'
import { matchSelector, SessionStatementRules } from '../../src/policy/statement-rules.js'

const sel = (s: Partial<{ classes: string[]; commands: string[]; objects: string[]; functions: string[] }>) => ({ classes: [], commands: [], objects: [], functions: [], ...s })
const facts = (sql: string) => {
  const st = splitStatements(sql, true)[0]!
  return { command: st.command, classes: st.classes, objects: st.objects, unknown: st.command === 'UNKNOWN' }
}

t.before(() => loadSqlParser())

t.test('selectors match what the statement is and names', async (t) => {
  t.equal(matchSelector(sel({ classes: ['DDL'] }), facts('DROP TABLE pii.users')), 'class DDL')
  t.equal(matchSelector(sel({ classes: ['DDL'] }), facts('SELECT 1')), null)
  t.equal(matchSelector(sel({ commands: ['TRUNCATE'] }), facts('TRUNCATE a.b')), 'command TRUNCATE TABLE', 'a command matches the longer tag it begins')
  t.equal(matchSelector(sel({ commands: ['TRUNC'] }), facts('TRUNCATE a.b')), null, 'only at a word boundary')
  t.equal(matchSelector(sel({ objects: ['public.secrets*'] }), facts('SELECT * FROM public.secrets_cards')), 'object public.secrets_cards')
  t.equal(matchSelector(sel({ objects: ['public.secrets*'] }), facts('SELECT * FROM other.secrets_cards')), null, 'another schema')
  t.equal(matchSelector(sel({ objects: ['public.secrets*'] }), facts('SELECT * FROM secrets_cards')), 'object secrets_cards',
    'an unqualified name matches on its name: search_path is the client\'s')
  t.equal(matchSelector(sel({ objects: ['PUBLIC.Secrets*'] }), facts('SELECT * FROM "public"."secrets_x"')), 'object public.secrets_x', 'case-insensitive')
  t.equal(matchSelector(sel({ objects: ['pii.*'] }), facts('SELECT * FROM pii.users')), 'object pii.users')
  t.equal(matchSelector(sel({ objects: ['pii.*'] }), facts('SELECT * FROM orders')), null, 'a whole-schema pattern: unqualified names are taken in the default search_path')
  t.equal(matchSelector(sel({ objects: ['pii.*'] }), facts('SELECT * FROM orders'), 'pii'), 'object orders', '…which has the role\'s own schema')
  t.equal(matchSelector(sel({ functions: ['pg_read_file'] }), facts("SELECT pg_read_file('/etc/passwd')")), 'function pg_read_file')
  t.equal(matchSelector(sel({ functions: ['pg_read_file'] }), facts('SELECT * FROM pg_read_file')), null, 'a table is not a function')
  t.equal(matchSelector(sel({ objects: ['pg_read_file'] }), facts("SELECT pg_read_file('x')")), null, 'a function is not an object')
  t.equal(matchSelector(sel({ classes: ['WRITE'], objects: ['pii.*'] }), facts('SELECT * FROM pii.users')), null, 'every key given must match')
  t.equal(matchSelector(sel({ classes: ['READ', 'WRITE'], objects: ['pii.*'] }), facts('DELETE FROM pii.users')), 'class WRITE, object pii.users')
})

const rules = (r: Partial<StatementRules>): StatementRules => ({ deny: [], requireClaims: [], requireApproval: [], unknown: 'deny', mode: 'enforce', ...r })
const entry = (name: string, s: Parameters<typeof sel>[0], mode: 'enforce' | 'monitor' = 'enforce') => ({ name, selector: sel(s), mode })

t.test('verdicts: deny, monitor, claims, approvals, unknown', async (t) => {
  const r = new SessionStatementRules('app', rules({
    deny: [entry('no-ddl', { classes: ['DDL'] }), entry('deny[1]', { commands: ['TRUNCATE'] }, 'monitor')],
    requireClaims: [{ ...entry('require_claims[0]', { classes: ['ROLE'] }), claim: 'change_ticket' }],
  }), { change_ticket: 'CHG-7' }, null, 'app')
  t.equal(r.evaluate(facts('SELECT 1')), null, 'nothing to say')
  t.same(r.evaluate(facts('CREATE TABLE t (a int)')), {
    deny: { rule: 'app', statement_rule: 'no-ddl', matched: 'class DDL' },
    policy: { denied_by: { rule: 'app', statement_rule: 'no-ddl', matched: 'class DDL' } },
  })
  t.same(r.evaluate(facts('TRUNCATE t')), { deny: null, policy: { would_deny: [{ rule: 'app', statement_rule: 'deny[1]', matched: 'command TRUNCATE TABLE' }] } }, 'monitor: runs, recorded')
  t.same(r.evaluate(facts('ALTER ROLE x NOLOGIN')), { deny: null, policy: { claims: { change_ticket: 'CHG-7' } } }, 'the claim is there: its value is recorded')
  t.same(r.evaluate({ command: 'UNKNOWN', classes: [], objects: [], unknown: true })?.deny, { rule: 'app', statement_rule: 'unknown', matched: 'a statement the proxy cannot classify' }, 'fail closed')
  t.ok(r.refusesUnknown)

  const noClaim = new SessionStatementRules('app', rules({ requireClaims: [{ ...entry('tickets', { classes: ['ROLE', 'DDL'] }), claim: 'change_ticket' }] }), { change_ticket: '' }, null, 'app')
  t.same(noClaim.evaluate(facts('DROP ROLE x'))?.deny, { rule: 'app', statement_rule: 'tickets', matched: 'class ROLE, without claim change_ticket' }, 'an empty claim is no claim')

  const open = new SessionStatementRules('app', rules({ deny: [entry('d', { classes: ['DDL'] })], unknown: 'allow' }), {}, null, 'app')
  t.equal(open.evaluate({ command: 'UNKNOWN', classes: [], objects: [], unknown: true }), null, 'unknown: allow')
  t.notOk(open.refusesUnknown)
  const none = new SessionStatementRules('app', rules({}), {}, null, 'app')
  t.equal(none.evaluate({ command: 'UNKNOWN', classes: [], objects: [], unknown: true }), null, 'rules that refuse nothing do not refuse the unknown')

  const approvals = (scope: { classes: string[] | null } | null) =>
    new SessionStatementRules('dba', rules({ requireApproval: [entry('approved-ddl', { classes: ['DDL', 'ROLE'] })] }), {}, scope, 'dba')
  t.match(approvals(null).evaluate(facts('DROP TABLE t'))?.deny, { statement_rule: 'approved-ddl', matched: 'class DDL, without an approval covering it' })
  t.equal(approvals({ classes: null }).evaluate(facts('DROP TABLE t')), null, 'an approval without a class scope covers it')
  t.equal(approvals({ classes: ['DDL'] }).evaluate(facts('DROP TABLE t')), null)
  t.ok(approvals({ classes: ['ROLE'] }).evaluate(facts('DROP TABLE t'))?.deny, 'an approval for other classes does not')
})
