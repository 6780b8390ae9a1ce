import t from 'tap'
import fc from 'fast-check'
import { loadSqlParser, splitStatements } from '../../src/classify/split.js'
import { classifyStatement, type AuditClass, type StatementObject } from '../../src/classify/index.js'

t.before(() => loadSqlParser())

/** 'type:schema.name' or 'type:name' (types may contain spaces; names here contain no dots, except settings). */
function obj(s: string): StatementObject {
  const colon = s.indexOf(':')
  const type = s.slice(0, colon)
  const rest = s.slice(colon + 1)
  const dot = type === 'setting' ? -1 : rest.indexOf('.') // setting names (pgwitness.identity) are not qualified
  return dot < 0 ? { type, schema: null, name: rest } : { type, schema: rest.slice(0, dot), name: rest.slice(dot + 1) }
}

function classify(sql: string) {
  const stmts = splitStatements(sql)
  if (stmts.length !== 1) throw new Error(`expected one statement: ${sql}`)
  const s = stmts[0]!
  return { command: s.command, ...classifyStatement(s.node) }
}

// [sql, command, classes (space-separated, in AuditClass order), objects]
const TABLE: Array<[string, string, string, string[]]> = [
  // ---- READ: SELECT forms, joins, sub-queries, set operations, quoted and qualified names ----
  ["select 1", "SELECT", "READ", []],
  ["SELECT * FROM accounts", "SELECT", "READ", ["relation:accounts"]],
  ["select a.id, b.name from public.accounts a join billing.invoices b on b.account_id = a.id", "SELECT", "READ", ["relation:public.accounts", "relation:billing.invoices"]],
  ["select * from t1 left join (t2 join t3 using (id)) on true cross join t4", "SELECT", "READ", ["relation:t1", "relation:t2", "relation:t3", "relation:t4"]],
  ["select * from t where a = any(select b from u) and exists(select 1 from w)", "SELECT", "READ", ["relation:t", "relation:u", "relation:w"]],
  ["select (select max(a) from t) as m", "SELECT", "READ FUNCTION", ["function:max", "relation:t"]],
  ["select * from (select * from inner_t) sub", "SELECT", "READ", ["relation:inner_t"]],
  ["select 1 union select a from t intersect select b from s.u except select c from v", "SELECT", "READ", ["relation:t", "relation:s.u", "relation:v"]],
  ["values (1), (2)", "SELECT", "READ", []],
  ["table t", "SELECT", "READ", ["relation:t"]],
  ["select * from \"MyTable\" m, \"Sales\".\"Q1 Report\"", "SELECT", "READ", ["relation:MyTable", "relation:Sales.Q1 Report"]],
  ["select * from mydb.public.t", "SELECT", "READ", ["relation:public.t"]],
  ["select * from t for update of t", "SELECT", "READ", ["relation:t"]],
  ["select * from t tablesample system (10)", "SELECT", "READ", ["relation:t"]],
  // ---- CTEs: scoping (sequential, recursive, nested, shadowing), data-modifying CTEs ----
  ["with a as (select * from t), b as (select * from a) select * from b, a", "SELECT", "READ", ["relation:t"]],
  ["with recursive r(n) as (select 1 union all select n + 1 from r where n < 10) select * from r", "SELECT", "READ", []],
  ["with a as (select * from src) select * from (with a as (select * from a) select * from a) q, a", "SELECT", "READ", ["relation:src"]],
  ["select * from a where exists (with a as (select 1) select * from a)", "SELECT", "READ", ["relation:a"]],
  ["with t as (select 1) select * from public.t, t", "SELECT", "READ", ["relation:public.t"]],
  ["with x as (select 1) select * from y", "SELECT", "READ", ["relation:y"]],
  ["with d as (delete from t where id = 1 returning *) select * from d", "SELECT", "READ WRITE", ["relation:t"]],
  ["with u as (update accounts set balance = 0 returning id) select count(*) from u", "SELECT", "READ WRITE FUNCTION", ["relation:accounts", "function:count"]],
  ["with x as (insert into t values (1) returning id) insert into u select id from x", "INSERT", "WRITE", ["relation:t", "relation:u"]],
  ["with src as (select * from staging) insert into target select * from src", "INSERT", "READ WRITE", ["relation:staging", "relation:target"]],
  ["with moved as (delete from queue returning *) insert into archive select * from moved", "INSERT", "WRITE", ["relation:queue", "relation:archive"]],
  // ---- functions in queries (SQL-syntax forms like EXTRACT/TRIM are not function objects) ----
  ["select * from generate_series(1, 3) g, lateral (select * from t where t.id = g) l", "SELECT", "READ FUNCTION", ["function:generate_series", "relation:t"]],
  ["select * from t, lateral f(t.id)", "SELECT", "READ FUNCTION", ["relation:t", "function:f"]],
  ["select count(*), now(), extract(year from now()), substring('abc' from 1 for 2) from t", "SELECT", "READ FUNCTION", ["function:count", "function:now", "relation:t"]],
  ["select myschema.calc(amount) from payments", "SELECT", "READ FUNCTION", ["function:myschema.calc", "relation:payments"]],
  ["select f(1)", "SELECT", "READ FUNCTION", ["function:f"]],
  ["select * from pg_catalog.pg_class", "SELECT", "READ", ["relation:pg_catalog.pg_class"]],
  ["select nextval('order_seq')", "SELECT", "READ FUNCTION", ["function:nextval", "sequence:order_seq"]],
  ["select currval('s.\"Seq\"')", "SELECT", "READ FUNCTION", ["function:currval", "sequence:s.Seq"]],
  ["select set_config('search_path', 'x', false)", "SELECT", "READ FUNCTION", ["function:set_config"]],
  ["select trim(name), coalesce(a, b), greatest(1, 2), current_user, 'x' at time zone 'utc' from t", "SELECT", "READ", ["relation:t"]],
  ["select rank() over (partition by a order by b) from t", "SELECT", "READ FUNCTION", ["function:rank", "relation:t"]],
  // ---- WRITE: INSERT / UPDATE / DELETE / MERGE / TRUNCATE ----
  ["insert into t values (1)", "INSERT", "WRITE", ["relation:t"]],
  ["insert into t (a, b) values (1, 'x') returning id", "INSERT", "WRITE", ["relation:t"]],
  ["insert into t select * from u", "INSERT", "READ WRITE", ["relation:t", "relation:u"]],
  ["insert into t select 1", "INSERT", "WRITE", ["relation:t"]],
  ["insert into audit.log values ((select max(id) from audit.log) + 1)", "INSERT", "READ WRITE FUNCTION", ["relation:audit.log", "function:max"]],
  ["insert into t (a) values (f(1))", "INSERT", "WRITE FUNCTION", ["relation:t", "function:f"]],
  ["insert into t(a) values (1) on conflict (a) do update set a = excluded.a", "INSERT", "WRITE", ["relation:t"]],
  ["insert into t default values", "INSERT", "WRITE", ["relation:t"]],
  ["update t set a = 1", "UPDATE", "WRITE", ["relation:t"]],
  ["update t set a = u.a from u where u.id = t.id", "UPDATE", "READ WRITE", ["relation:t", "relation:u"]],
  ["update t set a = (select max(b) from t)", "UPDATE", "READ WRITE FUNCTION", ["relation:t", "function:max"]],
  ["update t set a = lower(a) where id in (select id from blocked)", "UPDATE", "READ WRITE FUNCTION", ["relation:t", "function:lower", "relation:blocked"]],
  ["update only s.t as x set a = 1 where current of c", "UPDATE", "WRITE", ["relation:s.t"]],
  ["delete from t", "DELETE", "WRITE", ["relation:t"]],
  ["delete from t using u where t.id = u.id", "DELETE", "READ WRITE", ["relation:t", "relation:u"]],
  ["delete from t where id in (select id from expired)", "DELETE", "READ WRITE", ["relation:t", "relation:expired"]],
  ["merge into t using s.u on t.id = u.id when matched then update set a = 1 when not matched then insert values (1)", "MERGE", "READ WRITE", ["relation:t", "relation:s.u"]],
  ["merge into t using (select * from staging) s on t.id = s.id when matched then delete", "MERGE", "READ WRITE", ["relation:t", "relation:staging"]],
  ["with src as (select * from staging) merge into t using src on t.id = src.id when not matched then insert values (src.id)", "MERGE", "READ WRITE", ["relation:staging", "relation:t"]],
  ["truncate t", "TRUNCATE TABLE", "WRITE", ["table:t"]],
  ["truncate table t, s.u restart identity cascade", "TRUNCATE TABLE", "WRITE", ["table:t", "table:s.u"]],
  // ---- COPY in both directions, with queries ----
  ["copy t to stdout", "COPY", "READ", ["relation:t"]],
  ["copy t (a, b) to '/tmp/x.csv' with (format csv)", "COPY", "READ", ["relation:t"]],
  ["copy t from stdin", "COPY", "WRITE", ["relation:t"]],
  ["copy t from stdin where a > f(1)", "COPY", "WRITE FUNCTION", ["relation:t", "function:f"]],
  ["copy (select * from t join u using (id)) to stdout", "COPY", "READ", ["relation:t", "relation:u"]],
  ["copy (select f(id) from t) to stdout", "COPY", "READ FUNCTION", ["function:f", "relation:t"]],
  ["copy (delete from t returning *) to stdout", "COPY", "READ WRITE", ["relation:t"]],
  ["copy t to program 'gzip > /tmp/t.gz'", "COPY", "READ", ["relation:t"]],
  // ---- SELECT INTO / CREATE TABLE AS / materialized views: DDL, plus READ when the query runs ----
  ["select * into t3 from t", "SELECT INTO", "READ DDL", ["table:t3", "relation:t"]],
  ["select * into temp t4 from t where f(a)", "SELECT INTO", "READ FUNCTION DDL", ["table:t4", "relation:t", "function:f"]],
  ["create table t2 as select * from t", "CREATE TABLE AS", "READ DDL", ["table:t2", "relation:t"]],
  ["create table t2 as with c as (select * from t) select * from c", "CREATE TABLE AS", "READ DDL", ["table:t2", "relation:t"]],
  ["create table if not exists s.t2 as select f(x) from t", "CREATE TABLE AS", "READ FUNCTION DDL", ["table:s.t2", "function:f", "relation:t"]],
  ["create materialized view mv as select * from t", "CREATE MATERIALIZED VIEW", "READ DDL", ["materialized view:mv", "relation:t"]],
  ["create materialized view mv as select * from t with no data", "CREATE MATERIALIZED VIEW", "DDL", ["materialized view:mv", "relation:t"]],
  ["refresh materialized view mv", "REFRESH MATERIALIZED VIEW", "READ DDL", ["materialized view:mv"]],
  ["refresh materialized view concurrently s.mv", "REFRESH MATERIALIZED VIEW", "READ DDL", ["materialized view:s.mv"]],
  ["refresh materialized view mv with no data", "REFRESH MATERIALIZED VIEW", "DDL", ["materialized view:mv"]],
  // ---- EXPLAIN: MISC + the explained statement; ANALYZE follows GetCommandLogLevel ----
  ["explain select * from t", "EXPLAIN", "READ MISC", ["relation:t"]],
  ["explain analyze select * from t", "EXPLAIN", "READ MISC", ["relation:t"]],
  ["explain (analyze, buffers) delete from t where id = 1", "EXPLAIN", "WRITE", ["relation:t"]],
  ["explain (analyze false) delete from t", "EXPLAIN", "WRITE MISC", ["relation:t"]],
  ["explain (analyze on, verbose) delete from t", "EXPLAIN", "WRITE", ["relation:t"]],
  ["explain (analyze, analyze off) delete from t", "EXPLAIN", "WRITE MISC", ["relation:t"]],
  ["explain analyze with d as (delete from t returning *) select * from d", "EXPLAIN", "READ WRITE MISC", ["relation:t"]],
  ["create table t2 as execute q(f(1))", "CREATE TABLE AS", "FUNCTION DDL", ["table:t2", "function:f"]],
  ["explain delete from t", "EXPLAIN", "WRITE MISC", ["relation:t"]],
  ["explain insert into t select * from u", "EXPLAIN", "READ WRITE MISC", ["relation:t", "relation:u"]],
  ["explain analyze insert into t select * from u", "EXPLAIN", "READ WRITE", ["relation:t", "relation:u"]],
  ["explain analyze create table t5 as select * from t", "EXPLAIN", "READ DDL", ["table:t5", "relation:t"]],
  ["explain create table t6 as select * from t", "EXPLAIN", "READ MISC", ["table:t6", "relation:t"]],
  ["explain execute q(1)", "EXPLAIN", "MISC", []],
  ["explain analyze update t set a = f(a)", "EXPLAIN", "WRITE FUNCTION", ["relation:t", "function:f"]],
  // ---- PREPARE (classes of the prepared statement) / EXECUTE (MISC) / CALL / DO ----
  ["prepare q as select * from t where id = $1", "PREPARE", "READ", ["relation:t"]],
  ["prepare ins (int) as insert into t values ($1)", "PREPARE", "WRITE", ["relation:t"]],
  ["prepare q2 as insert into t select * from u", "PREPARE", "READ WRITE", ["relation:t", "relation:u"]],
  ["execute q", "EXECUTE", "MISC", []],
  ["execute q(1, 'x')", "EXECUTE", "MISC", []],
  ["execute q(f(1))", "EXECUTE", "FUNCTION MISC", ["function:f"]],
  ["deallocate q", "DEALLOCATE", "MISC", []],
  ["deallocate all", "DEALLOCATE ALL", "MISC", []],
  ["call p()", "CALL", "FUNCTION MISC", ["procedure:p"]],
  ["call s.p(1, f(2))", "CALL", "FUNCTION MISC", ["procedure:s.p", "function:f"]],
  ["do $$ begin perform 1; end $$", "DO", "FUNCTION", []],
  ["do language plpgsql $$ begin raise notice 'x'; end $$", "DO", "FUNCTION", []],
  // ---- DDL ----
  ["create table t (id int primary key, a text)", "CREATE TABLE", "DDL", ["table:t"]],
  ["create table s.t (id int references u(id) default nextval('s.seq'), like v) inherits (p)", "CREATE TABLE", "DDL", ["table:s.t", "table:p", "relation:u", "function:nextval", "sequence:s.seq", "relation:v"]],
  ["create table t_1 partition of t for values in (1)", "CREATE TABLE", "DDL", ["table:t_1", "table:t"]],
  ["create temp table tmp (a int)", "CREATE TABLE", "DDL", ["table:tmp"]],
  ["create unlogged table if not exists \"Mixed Case\" (a int)", "CREATE TABLE", "DDL", ["table:Mixed Case"]],
  ["create foreign table ft (a int) server srv", "CREATE FOREIGN TABLE", "DDL", ["foreign table:ft", "server:srv"]],
  ["create view v as select f(x) from t", "CREATE VIEW", "DDL", ["view:v", "function:f", "relation:t"]],
  ["create or replace view s.v as with c as (select * from t) select * from c", "CREATE VIEW", "DDL", ["view:s.v", "relation:t"]],
  ["create recursive view rv (n) as select 1 union all select n + 1 from rv where n < 5", "CREATE VIEW", "DDL", ["view:rv"]],
  ["create index i on s.t (lower(a)) where b > f()", "CREATE INDEX", "DDL", ["index:s.i", "relation:s.t", "function:lower", "function:f"]],
  ["create unique index concurrently on t (a)", "CREATE INDEX", "DDL", ["relation:t"]],
  ["create sequence s.q", "CREATE SEQUENCE", "DDL", ["sequence:s.q"]],
  ["alter sequence q restart", "ALTER SEQUENCE", "DDL", ["sequence:q"]],
  ["create function s.f(a int) returns int language sql begin atomic select a from t; end", "CREATE FUNCTION", "DDL", ["function:s.f", "relation:t"]],
  ["create or replace function f() returns int language plpgsql as $$ begin return 1; end $$", "CREATE FUNCTION", "DDL", ["function:f"]],
  ["create procedure p() language sql as 'select 1'", "CREATE PROCEDURE", "DDL", ["procedure:p"]],
  ["create trigger trg after insert on t for each row execute function s.tf()", "CREATE TRIGGER", "DDL", ["trigger:trg", "relation:t", "function:s.tf"]],
  ["create event trigger e on ddl_command_start execute function f()", "CREATE EVENT TRIGGER", "DDL", ["event trigger:e", "function:f"]],
  ["create type ty as enum ('a', 'b')", "CREATE TYPE", "DDL", ["type:ty"]],
  ["create type s.c as (a int, b text)", "CREATE TYPE", "DDL", ["type:s.c"]],
  ["create domain d as int check (value > 0)", "CREATE DOMAIN", "DDL", ["domain:d"]],
  ["create extension pgcrypto schema s", "CREATE EXTENSION", "DDL", ["extension:pgcrypto", "schema:s"]],
  ["create schema s", "CREATE SCHEMA", "DDL", ["schema:s"]],
  ["create schema s authorization r create table a (x int) grant select on a to bob", "CREATE SCHEMA", "ROLE DDL", ["schema:s", "role:r", "table:a", "role:bob"]],
  ["create schema authorization alice", "CREATE SCHEMA", "DDL", ["schema:alice", "role:alice"]],
  ["create database d owner r", "CREATE DATABASE", "DDL", ["database:d", "role:r"]],
  ["create policy p on t to r using (a = current_user)", "CREATE POLICY", "DDL", ["policy:p", "relation:t", "role:r"]],
  ["create rule r as on insert to t do instead delete from u", "CREATE RULE", "DDL", ["rule:r", "relation:t", "relation:u"]],
  ["create aggregate s.a (int) (sfunc = int4pl, stype = int)", "CREATE AGGREGATE", "DDL", ["aggregate:s.a"]],
  ["create statistics st on a, b from t", "CREATE STATISTICS", "DDL", ["statistics:st", "relation:t"]],
  ["create publication pub for table t, s.u", "CREATE PUBLICATION", "DDL", ["publication:pub", "relation:t", "relation:s.u"]],
  ["create subscription sub connection 'host=x' publication p", "CREATE SUBSCRIPTION", "DDL", ["subscription:sub"]],
  ["create server s foreign data wrapper postgres_fdw", "CREATE SERVER", "DDL", ["server:s"]],
  ["create tablespace ts location '/tmp/ts'", "CREATE TABLESPACE", "DDL", ["tablespace:ts"]],
  ["import foreign schema r from server srv into l", "IMPORT FOREIGN SCHEMA", "DDL", ["server:srv", "schema:l"]],
  ["alter table t add column b int", "ALTER TABLE", "DDL", ["table:t"]],
  ["alter table t add constraint fk foreign key (a) references u (b), owner to bob", "ALTER TABLE", "DDL", ["table:t", "relation:u", "role:bob"]],
  ["alter table if exists s.t rename to u", "ALTER TABLE", "DDL", ["table:s.t", "table:s.u"]],
  ["alter table s.t rename column a to b", "ALTER TABLE", "DDL", ["table:s.t"]],
  ["alter table t set schema s2", "ALTER TABLE", "DDL", ["table:t", "schema:s2"]],
  ["alter table p attach partition p_1 for values in (1)", "ALTER TABLE", "DDL", ["table:p", "relation:p_1"]],
  ["alter index i rename to j", "ALTER INDEX", "DDL", ["index:i", "index:j"]],
  ["alter view v rename to w", "ALTER VIEW", "DDL", ["view:v", "view:w"]],
  ["alter materialized view m rename to n", "ALTER MATERIALIZED VIEW", "DDL", ["materialized view:m", "materialized view:n"]],
  ["alter function f(int) rename to g", "ALTER FUNCTION", "DDL", ["function:f", "function:g"]],
  ["alter function f set schema s", "ALTER FUNCTION", "DDL", ["function:f", "schema:s"]],
  ["alter procedure p() owner to r", "ALTER PROCEDURE", "DDL", ["procedure:p", "role:r"]],
  ["alter schema s owner to r", "ALTER SCHEMA", "DDL", ["schema:s", "role:r"]],
  ["alter schema s rename to t", "ALTER SCHEMA", "DDL", ["schema:s", "schema:t"]],
  ["alter database d rename to e", "ALTER DATABASE", "DDL", ["database:d", "database:e"]],
  ["alter database d set work_mem = '1MB'", "ALTER DATABASE", "DDL", ["database:d", "setting:work_mem"]],
  ["alter database d connection limit 10", "ALTER DATABASE", "DDL", ["database:d"]],
  ["alter type ty add value 'c'", "ALTER TYPE", "DDL", ["type:ty"]],
  ["alter domain d set not null", "ALTER DOMAIN", "DDL", ["domain:d"]],
  ["alter extension e update", "ALTER EXTENSION", "DDL", ["extension:e"]],
  ["alter system set work_mem = '1MB'", "ALTER SYSTEM", "DDL", ["setting:work_mem"]],
  ["alter system reset all", "ALTER SYSTEM", "DDL", []],
  ["comment on table t is 'x'", "COMMENT", "DDL", ["table:t"]],
  ["comment on column s.t.c is 'x'", "COMMENT", "DDL", ["relation:s.t"]],
  ["comment on function f(int) is 'x'", "COMMENT", "DDL", ["function:f"]],
  ["security label on table t is 'x'", "SECURITY LABEL", "DDL", ["table:t"]],
  ["drop table a.b, c cascade", "DROP TABLE", "DDL", ["table:a.b", "table:c"]],
  ["drop table if exists t", "DROP TABLE", "DDL", ["table:t"]],
  ["drop view v", "DROP VIEW", "DDL", ["view:v"]],
  ["drop materialized view m", "DROP MATERIALIZED VIEW", "DDL", ["materialized view:m"]],
  ["drop index concurrently s.i", "DROP INDEX", "DDL", ["index:s.i"]],
  ["drop sequence s", "DROP SEQUENCE", "DDL", ["sequence:s"]],
  ["drop function f(int), s.g", "DROP FUNCTION", "DDL", ["function:f", "function:s.g"]],
  ["drop procedure p", "DROP PROCEDURE", "DDL", ["procedure:p"]],
  ["drop trigger trg on s.t", "DROP TRIGGER", "DDL", ["relation:s.t", "trigger:trg"]],
  ["drop policy p on t", "DROP POLICY", "DDL", ["relation:t", "policy:p"]],
  ["drop schema s cascade", "DROP SCHEMA", "DDL", ["schema:s"]],
  ["drop type t, s.u", "DROP TYPE", "DDL", ["type:t", "type:s.u"]],
  ["drop extension e", "DROP EXTENSION", "DDL", ["extension:e"]],
  ["drop database d", "DROP DATABASE", "DDL", ["database:d"]],
  ["drop database if exists \"Old DB\" with (force)", "DROP DATABASE", "DDL", ["database:Old DB"]],
  ["drop owned by r", "DROP OWNED", "DDL", ["role:r"]],
  ["reassign owned by a to b", "REASSIGN OWNED", "DDL", ["role:a", "role:b"]],
  ["drop user mapping for r server s", "DROP USER MAPPING", "DDL", ["role:r", "server:s"]],
  ["drop server s", "DROP SERVER", "DDL", ["server:s"]],
  ["cluster t using i", "CLUSTER", "DDL", ["relation:t", "index:i"]],
  // ---- ROLE: GRANT / REVOKE / default privileges / roles / user mappings ----
  ["grant select on t, s.u to a, public", "GRANT", "ROLE", ["relation:t", "relation:s.u", "role:a", "role:public"]],
  ["grant select (a, b), update (a) on table t to r", "GRANT", "ROLE", ["relation:t", "role:r"]],
  ["grant all on schema s to r", "GRANT", "ROLE", ["schema:s", "role:r"]],
  ["grant usage, create on schema s to r with grant option", "GRANT", "ROLE", ["schema:s", "role:r"]],
  ["grant execute on function f(int) to r", "GRANT", "ROLE", ["function:f", "role:r"]],
  ["grant usage on sequence sq to r", "GRANT", "ROLE", ["sequence:sq", "role:r"]],
  ["grant select on all tables in schema s to r", "GRANT", "ROLE", ["schema:s", "role:r"]],
  ["grant connect on database d to r", "GRANT", "ROLE", ["database:d", "role:r"]],
  ["grant usage on type ty to r", "GRANT", "ROLE", ["type:ty", "role:r"]],
  ["grant set on parameter work_mem to r", "GRANT", "ROLE", ["setting:work_mem", "role:r"]],
  ["grant a, b to c with admin option granted by d", "GRANT ROLE", "ROLE", ["role:a", "role:b", "role:c", "role:d"]],
  ["revoke a from c", "REVOKE ROLE", "ROLE", ["role:a", "role:c"]],
  ["revoke select on t from current_user", "REVOKE", "ROLE", ["relation:t"]],
  ["revoke all on all functions in schema s from public", "REVOKE", "ROLE", ["schema:s", "role:public"]],
  ["alter default privileges for role a in schema s grant select on tables to b", "ALTER DEFAULT PRIVILEGES", "ROLE", ["role:a", "schema:s", "role:b"]],
  ["alter default privileges revoke execute on functions from public", "ALTER DEFAULT PRIVILEGES", "ROLE", ["role:public"]],
  ["create role r", "CREATE ROLE", "ROLE", ["role:r"]],
  ["create role r with login password 'x' in role a, b", "CREATE ROLE", "ROLE", ["role:r", "role:a", "role:b"]],
  ["create user u", "CREATE ROLE", "ROLE", ["role:u"]],
  ["create group g with user a, b", "CREATE ROLE", "ROLE", ["role:g", "role:a", "role:b"]],
  ["alter role r with superuser", "ALTER ROLE", "ROLE", ["role:r"]],
  ["alter user u with password 'x'", "ALTER ROLE", "ROLE", ["role:u"]],
  ["alter group g add user a, b", "ALTER ROLE", "ROLE", ["role:g", "role:a", "role:b"]],
  ["alter role r set work_mem = 1", "ALTER ROLE", "ROLE", ["role:r", "setting:work_mem"]],
  ["alter role r in database d reset all", "ALTER ROLE", "ROLE", ["role:r", "database:d"]],
  ["alter role r rename to s", "ALTER ROLE", "ROLE", ["role:r", "role:s"]],
  ["alter role current_user set search_path = x", "ALTER ROLE", "ROLE", ["setting:search_path"]],
  ["drop role a, b", "DROP ROLE", "ROLE", ["role:a", "role:b"]],
  ["drop user if exists u", "DROP ROLE", "ROLE", ["role:u"]],
  ["drop group g", "DROP ROLE", "ROLE", ["role:g"]],
  ["create user mapping for r server s options (user 'u', password 'p')", "CREATE USER MAPPING", "ROLE", ["role:r", "server:s"]],
  ["alter user mapping for current_user server s options (set password 'p')", "ALTER USER MAPPING", "ROLE", ["server:s"]],
  // ---- MISC_SET: SET / RESET of every kind ----
  ["set search_path = a, b", "SET", "MISC_SET", ["setting:search_path"]],
  ["set local search_path to default", "SET", "MISC_SET", ["setting:search_path"]],
  ["set work_mem to '64MB'", "SET", "MISC_SET", ["setting:work_mem"]],
  ["set session work_mem = '1MB'", "SET", "MISC_SET", ["setting:work_mem"]],
  ["set role r", "SET", "MISC_SET", ["setting:role", "role:r"]],
  ["set role none", "SET", "MISC_SET", ["setting:role"]],
  ["set session authorization 'bob'", "SET", "MISC_SET", ["setting:session_authorization", "role:bob"]],
  ["set session authorization default", "SET", "MISC_SET", ["setting:session_authorization"]],
  ["set time zone 'UTC'", "SET", "MISC_SET", ["setting:timezone"]],
  ["set transaction isolation level serializable", "SET", "MISC_SET", []],
  ["set session characteristics as transaction read only", "SET", "MISC_SET", []],
  ["set \"pgwitness.identity\" = 'x'", "SET", "MISC_SET", ["setting:pgwitness.identity"]],
  ["reset all", "RESET", "MISC_SET", []],
  ["reset role", "RESET", "MISC_SET", ["setting:role"]],
  ["reset search_path", "RESET", "MISC_SET", ["setting:search_path"]],
  // ---- MISC ----
  ["show work_mem", "SHOW", "MISC", ["setting:work_mem"]],
  ["show all", "SHOW", "MISC", []],
  ["discard all", "DISCARD ALL", "MISC", []],
  ["discard plans", "DISCARD PLANS", "MISC", []],
  ["discard sequences", "DISCARD SEQUENCES", "MISC", []],
  ["discard temp", "DISCARD TEMP", "MISC", []],
  ["vacuum", "VACUUM", "MISC", []],
  ["vacuum full analyze t", "VACUUM", "MISC", ["relation:t"]],
  ["vacuum (verbose, analyze) t, s.u (a)", "VACUUM", "MISC", ["relation:t", "relation:s.u"]],
  ["analyze t", "ANALYZE", "MISC", ["relation:t"]],
  ["analyze", "ANALYZE", "MISC", []],
  ["reindex table t", "REINDEX", "MISC", ["table:t"]],
  ["reindex index s.i", "REINDEX", "MISC", ["index:s.i"]],
  ["reindex schema s", "REINDEX", "MISC", ["schema:s"]],
  ["reindex database d", "REINDEX", "MISC", ["database:d"]],
  ["lock table t", "LOCK TABLE", "MISC", ["relation:t"]],
  ["lock t, s.u in exclusive mode nowait", "LOCK TABLE", "MISC", ["relation:t", "relation:s.u"]],
  ["listen ch", "LISTEN", "MISC", ["channel:ch"]],
  ["notify ch, 'x'", "NOTIFY", "MISC", ["channel:ch"]],
  ["unlisten *", "UNLISTEN", "MISC", []],
  ["checkpoint", "CHECKPOINT", "MISC", []],
  ["load 'auto_explain'", "LOAD", "MISC", []],
  ["set constraints all deferred", "SET CONSTRAINTS", "MISC", []],
  ["set constraints c1 immediate", "SET CONSTRAINTS", "MISC", []],
  // ---- transactions and cursors ----
  ["begin", "BEGIN", "MISC", []],
  ["begin isolation level repeatable read", "BEGIN", "MISC", []],
  ["start transaction read only", "START TRANSACTION", "MISC", []],
  ["commit", "COMMIT", "MISC", []],
  ["end", "COMMIT", "MISC", []],
  ["rollback", "ROLLBACK", "MISC", []],
  ["abort", "ROLLBACK", "MISC", []],
  ["savepoint a", "SAVEPOINT", "MISC", []],
  ["release savepoint a", "RELEASE", "MISC", []],
  ["rollback to savepoint a", "ROLLBACK", "MISC", []],
  ["prepare transaction 'x'", "PREPARE TRANSACTION", "MISC", []],
  ["commit prepared 'x'", "COMMIT PREPARED", "MISC", []],
  ["rollback prepared 'x'", "ROLLBACK PREPARED", "MISC", []],
  ["declare c cursor for select * from t", "DECLARE CURSOR", "READ", ["relation:t"]],
  ["declare c scroll cursor with hold for select f(a) from s.t", "DECLARE CURSOR", "READ FUNCTION", ["function:f", "relation:s.t"]],
  ["fetch 1 from c", "FETCH", "MISC", []],
  ["fetch all in c", "FETCH", "MISC", []],
  ["move next in c", "MOVE", "MISC", []],
  ["close c", "CLOSE CURSOR", "MISC", []],
  ["close all", "CLOSE CURSOR ALL", "MISC", []],
]

t.test(`table of ${TABLE.length} statements`, async (t) => {
  t.ok(TABLE.length >= 150, 'at least 150 statements')
  for (const [sql, command, classes, objects] of TABLE) {
    const got = classify(sql)
    t.same(
      { command: got.command, classes: got.classes, objects: got.objects },
      { command, classes: classes === '' ? [] : classes.split(' '), objects: objects.map(obj) },
      sql,
    )
  }
})

t.test('every class is covered by the table', async (t) => {
  const seen = new Set<string>()
  for (const [, , classes] of TABLE) for (const c of classes.split(' ')) seen.add(c)
  for (const c of ['READ', 'WRITE', 'FUNCTION', 'ROLE', 'DDL', 'MISC', 'MISC_SET']) t.ok(seen.has(c), c)
})

t.test('multi-statement strings: split first, classify each', async (t) => {
  const cases: Array<[string, Array<[string, string, string[]]>]> = [
    [
      "begin; update accounts set balance = balance - 10 where id = 1; insert into ledger select * from pending; commit",
      [
        ['BEGIN', 'MISC', []],
        ['UPDATE', 'WRITE', ['relation:accounts']],
        ['INSERT', 'READ WRITE', ['relation:ledger', 'relation:pending']],
        ['COMMIT', 'MISC', []],
      ],
    ],
    [
      "set role auditor; select * from audit.events; reset role",
      [
        ['SET', 'MISC_SET', ['setting:role', 'role:auditor']],
        ['SELECT', 'READ', ['relation:audit.events']],
        ['RESET', 'MISC_SET', ['setting:role']],
      ],
    ],
    [
      "create table t (a int); grant select on t to reporting; create role r login; do $$ begin end $$; call p()",
      [
        ['CREATE TABLE', 'DDL', ['table:t']],
        ['GRANT', 'ROLE', ['relation:t', 'role:reporting']],
        ['CREATE ROLE', 'ROLE', ['role:r']],
        ['DO', 'FUNCTION', []],
        ['CALL', 'FUNCTION MISC', ['procedure:p']],
      ],
    ],
    [
      "with x as (select 1) select * from x; select * from x",
      [
        ['SELECT', 'READ', []],
        // The CTE is not in scope in the second statement: x is a relation there.
        ['SELECT', 'READ', ['relation:x']],
      ],
    ],
    [
      "prepare q as delete from t where id = $1; execute q(1); deallocate q",
      [
        ['PREPARE', 'WRITE', ['relation:t']],
        ['EXECUTE', 'MISC', []],
        ['DEALLOCATE', 'MISC', []],
      ],
    ],
  ]
  for (const [sql, expected] of cases) {
    const got = splitStatements(sql).map((s) => {
      const c = classifyStatement(s.node)
      return [s.command, c.classes.join(' '), c.objects]
    })
    t.same(got, expected.map(([cmd, cls, objs]) => [cmd, cls, objs.map(obj)]), sql)
  }
})

t.test('unparseable and unknown input never throws', async (t) => {
  t.same(classifyStatement(null), { classes: [], objects: [] }, 'null node (UNKNOWN statement)')
  t.same(classifyStatement({}), { classes: [], objects: [] })
  t.same(classifyStatement({ SomeFutureStmt: { relation: { relname: 'x' } } }), { classes: ['MISC'], objects: [] })
  t.same(classifyStatement({ SelectStmt: null } as unknown as Record<string, unknown>).classes, ['READ'])
  t.same(classifyStatement({ InsertStmt: { relation: 42, selectStmt: 'x' } }).classes, ['WRITE'])
  const unknown = splitStatements('selec 1')[0]!
  t.equal(unknown.command, 'UNKNOWN')
  t.same(classifyStatement(unknown.node), { classes: [], objects: [] })
})

t.test('arbitrary trees under any statement type never throw, classes stay ordered and unique', async (t) => {
  const ORDER: AuditClass[] = ['READ', 'WRITE', 'FUNCTION', 'ROLE', 'DDL', 'MISC', 'MISC_SET']
  const types = ['SelectStmt', 'InsertStmt', 'CreateStmt', 'GrantStmt', 'ExplainStmt', 'CopyStmt', 'DropStmt',
    'RenameStmt', 'VariableSetStmt', 'CreateSchemaStmt', 'AlterDefaultPrivilegesStmt', 'PrepareStmt', 'Whatever']
  fc.assert(
    fc.property(fc.constantFrom(...types), fc.anything({ withNullPrototype: false }), (type, body) => {
      const r = classifyStatement({ [type]: body })
      const idx = r.classes.map((c) => ORDER.indexOf(c))
      return idx.every((i, k) => i >= 0 && (k === 0 || i > idx[k - 1]!)) && Array.isArray(r.objects)
    }),
    { numRuns: 2000 },
  )
  t.pass('no throw')
})

t.test('classes are in AuditClass order without duplicates; objects de-duplicated in first-seen order', async (t) => {
  const r = classify('with d as (delete from t returning *), e as (delete from t returning *) select f(1), f(2) from d, t, T, "T"')
  t.same(r.classes, ['READ', 'WRITE', 'FUNCTION'])
  t.same(r.objects, [obj('relation:t'), obj('function:f'), { type: 'relation', schema: null, name: 'T' }])
})

t.test('parse trees are not modified', async (t) => {
  const s = splitStatements('with a as (select * from t) insert into u select f(x) from a join v using (id)')[0]!
  const before = JSON.stringify(s.node)
  classifyStatement(s.node)
  classifyStatement(s.node)
  t.equal(JSON.stringify(s.node), before)
})
