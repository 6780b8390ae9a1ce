import t from 'tap'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import { capText, rowsOfTag } from '../../src/session/statement-tracker.js'

t.before(() => loadSqlParser())

t.test('splits a multi-statement string the way PostgreSQL parses it', async (t) => {
  const s = splitStatements("create table a(x int); insert into a values (1),(2);select 'a;b' ; ")
  // Exact texts that partition the string: each statement with its own ';', the last to the end.
  t.same(s.map((x) => x.text), ['create table a(x int);', ' insert into a values (1),(2);', "select 'a;b' ; "])
  t.equal(s.map((x) => x.text).join(''), "create table a(x int); insert into a values (1),(2);select 'a;b' ; ")
  t.same(s.map((x) => x.command), ['CREATE TABLE', 'INSERT', 'SELECT'])
})

t.test('byte offsets of non-ASCII text are handled', async (t) => {
  const s = splitStatements("select 'é€😀'; select 2")
  t.same(s.map((x) => x.text), ["select 'é€😀';", ' select 2'])
})

t.test('unparseable SQL is one UNKNOWN statement (PostgreSQL runs none of it)', async (t) => {
  const s = splitStatements('select 1; selec 2; select 3')
  t.equal(s.length, 1)
  t.equal(s[0]!.command, 'UNKNOWN')
  t.equal(s[0]!.text, 'select 1; selec 2; select 3')
})

t.test('an empty query is one EMPTY QUERY statement', async (t) => {
  t.same(splitStatements(' ; ').map((x) => x.command), ['EMPTY QUERY'])
  t.same(splitStatements('').map((x) => x.command), ['EMPTY QUERY'])
})

t.test('command names', async (t) => {
  const cases: Array<[string, string]> = [
    ['select 1', 'SELECT'], ['select 1 into t2', 'SELECT INTO'], ['create table t as select 1', 'CREATE TABLE AS'],
    ['create materialized view m as select 1', 'CREATE MATERIALIZED VIEW'], ['drop table a', 'DROP TABLE'],
    ['drop index i', 'DROP INDEX'], ['alter table a add b int', 'ALTER TABLE'], ['alter role r login', 'ALTER ROLE'],
    ['grant select on a to b', 'GRANT'], ['revoke select on a from b', 'REVOKE'], ['grant r to u', 'GRANT ROLE'],
    ['revoke r from u', 'REVOKE ROLE'], ['begin', 'BEGIN'], ['start transaction', 'START TRANSACTION'], ['commit', 'COMMIT'],
    ['rollback', 'ROLLBACK'], ['set x.y = 1', 'SET'], ['reset all', 'RESET'], ['copy a from stdin', 'COPY'],
    ['do $$ begin end $$', 'DO'], ['call p()', 'CALL'], ['explain select 1', 'EXPLAIN'], ['truncate a', 'TRUNCATE TABLE'],
    ['merge into a using b on a.x = b.x when matched then delete', 'MERGE'], ['create role r', 'CREATE ROLE'],
    ['discard all', 'DISCARD ALL'], ['deallocate all', 'DEALLOCATE ALL'], ['prepare q as select 1', 'PREPARE'],
    ['execute q', 'EXECUTE'], ['fetch 1 from c', 'FETCH'], ['move 1 in c', 'MOVE'], ['vacuum', 'VACUUM'],
    ['create index on a(x)', 'CREATE INDEX'], ['create view v as select 1', 'CREATE VIEW'], ['show all', 'SHOW'],
    ['create function f() returns int language sql as $$select 1$$', 'CREATE FUNCTION'], ['listen c', 'LISTEN'],
    ['alter view v rename to w', 'ALTER VIEW'], ['alter table t rename column a to b', 'ALTER TABLE'], ['create aggregate a(int) (sfunc = int4pl, stype = int)', 'CREATE AGGREGATE'],
  ]
  for (const [sql, cmd] of cases) t.equal(splitStatements(sql)[0]!.command, cmd, sql)
})

t.test('rows from command tags', async (t) => {
  t.equal(rowsOfTag('INSERT 0 5'), 5)
  t.equal(rowsOfTag('SELECT 3'), 3)
  t.equal(rowsOfTag('UPDATE 0'), 0)
  t.equal(rowsOfTag('COPY 100000'), 100000)
  t.equal(rowsOfTag('CREATE TABLE'), null)
  t.equal(rowsOfTag('BEGIN'), null)
})

t.test('capText never splits a UTF-8 character', async (t) => {
  t.same(capText('abc', 10), { text: 'abc', truncated: false })
  t.same(capText('aé€', 4), { text: 'aé', truncated: true })
  t.same(capText('€€', 4), { text: '€', truncated: true })
})
