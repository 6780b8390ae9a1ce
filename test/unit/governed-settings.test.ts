/**
 * governedSettingChanges (src/policy/reserved-settings.ts): which statements
 * change application_name or pgwitness.*, read from PostgreSQL's own parse
 * tree; and SplitStatement.governedSetting, the flag records carry.
 */
import t from 'tap'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import { governedSettingChanges, type GovernedSettingChange } from '../../src/policy/reserved-settings.js'

t.before(() => loadSqlParser())

function changes(sql: string): GovernedSettingChange[] {
  const s = splitStatements(sql)
  if (s.length !== 1) throw new Error(`expected one statement: ${sql}`)
  return governedSettingChanges(s[0]!.node)
}

t.test('SET / SET LOCAL / RESET of a governed setting, however spelled', async (t) => {
  const cases: Array<[string, GovernedSettingChange[]]> = [
    ["SET application_name = 'x'", [{ via: 'set', setting: 'application_name' }]],
    ["set local application_name to 'x'", [{ via: 'set', setting: 'application_name' }]],
    ["SET SESSION Application_Name = 'x'", [{ via: 'set', setting: 'application_name' }]],
    ['SET "application_name" = x', [{ via: 'set', setting: 'application_name' }]],
    ['SET application_name TO DEFAULT', [{ via: 'set', setting: 'application_name' }]],
    ["SET pgwitness.session_id = 'forged'", [{ via: 'set', setting: 'pgwitness.session_id' }]],
    ["SET PgWitness.Anything = '1'", [{ via: 'set', setting: 'pgwitness.anything' }]],
    ['RESET application_name', [{ via: 'reset', setting: 'application_name' }]],
    ['reset pgwitness.session_id', [{ via: 'reset', setting: 'pgwitness.session_id' }]],
    ['RESET ALL', [{ via: 'reset_all', setting: null }]],
    ['DISCARD ALL', [{ via: 'discard_all', setting: null }]],
  ]
  for (const [sql, want] of cases) t.same(changes(sql), want, sql)
})

t.test('set_config anywhere in the statement', async (t) => {
  const cases: Array<[string, GovernedSettingChange[]]> = [
    ["SELECT set_config('pgwitness.session_id', 'x', false)", [{ via: 'set_config', setting: 'pgwitness.session_id' }]],
    ["select pg_catalog.set_config('application_name', 'x', true)", [{ via: 'set_config', setting: 'application_name' }]],
    ["select set_config('Application_Name'::text, 'x', false)", [{ via: 'set_config', setting: 'application_name' }]],
    ['select U&"\\0073et_config"(\'application_name\', \'x\', false)', [{ via: 'set_config', setting: 'application_name' }]],
    ['select set_config($1, $2, false)', [{ via: 'set_config', setting: null }]],
    ["select set_config(setting_name => 'application_name', new_value => 'x', is_local => false)", [{ via: 'set_config', setting: null }]],
    ["select 1 from t where exists (select set_config('application_name', 'x', false))", [{ via: 'set_config', setting: 'application_name' }]],
    ["select * from set_config('pgwitness.session_id', 'x', false)", [{ via: 'set_config', setting: 'pgwitness.session_id' }]],
    ["insert into log select set_config('application_name', v, false) from src", [{ via: 'set_config', setting: 'application_name' }]],
    ["prepare p as select set_config('application_name', 'x', false)", [{ via: 'set_config', setting: 'application_name' }]],
    [
      "select set_config('application_name', 'a', false), set_config('pgwitness.session_id', 'b', false)",
      [{ via: 'set_config', setting: 'application_name' }, { via: 'set_config', setting: 'pgwitness.session_id' }],
    ],
  ]
  for (const [sql, want] of cases) t.same(changes(sql), want, sql)
})

t.test('UPDATE of pg_settings, also inside a CTE', async (t) => {
  const want = [{ via: 'pg_settings', setting: null }]
  t.same(changes("UPDATE pg_settings SET setting = 'x' WHERE name = 'application_name'"), want)
  t.same(changes("update pg_catalog.pg_settings set setting = 'x' where name = 'pgwitness.session_id'"), want)
  t.same(changes("with u as (update pg_settings set setting = 'x' where name = 'application_name' returning 1) select * from u"), want)
  t.same(changes("update myschema.pg_settings set setting = 'x'"), [], 'a table of that name in another schema is not the view')
})

t.test('DO blocks whose body mentions a governed setting, set_config or pg_settings', async (t) => {
  const want = [{ via: 'do', setting: null }]
  t.same(changes("do $$ begin perform set_config('application_name', 'x', false); end $$"), want)
  t.same(changes("DO $$BEGIN EXECUTE 'SET pgwitness.session_id = ''x'''; END$$"), want)
  t.same(changes("do $$ begin update pg_settings set setting = 'x' where name = current_setting('my.name'); end $$"), want)
  t.same(changes("do $$ begin raise notice 'hello'; end $$"), [])
})

t.test('ordinary statements change nothing governed', async (t) => {
  for (const sql of [
    'select 1',
    "SET work_mem = '8MB'",
    "set search_path = public",
    'RESET work_mem',
    'DISCARD PLANS',
    "select set_config('search_path', 'public', false)",
    "select current_setting('application_name')",
    "select * from pg_settings where name = 'application_name'",
    "update t set application_name = 'x'",
    "ALTER SYSTEM SET application_name = 'x'", // takes effect in later sessions, under their startup value
    "ALTER ROLE app SET application_name = 'x'",
    'SET SESSION AUTHORIZATION DEFAULT',
    "create table pgwitness_settings (application_name text)",
  ]) {
    t.same(changes(sql), [], sql)
  }
  t.same(governedSettingChanges(null), [], 'an unparsed statement')
})

t.test('SplitStatement.governedSetting carries the answer for each statement of a Query', async (t) => {
  const s = splitStatements("select 1; set application_name = 'x'; select set_config('pgwitness.session_id', 'y', false); reset all; set work_mem = '1MB'")
  t.same(s.map((x) => x.governedSetting), [false, true, true, true, false])
  t.equal(splitStatements('selec 1; set application_name = 1')[0]!.governedSetting, false, 'unparseable text: not flagged (it does not run)')
})
