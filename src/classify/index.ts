/**
 * pgaudit-compatible statement classes and the objects a statement names,
 * from libpg-query's parse tree (see ../split.ts). Pure and synchronous: no
 * catalog access, so everything is decided from the text as written.
 *
 * Classes follow pgaudit (pgaudit.c log_audit_event(), which classifies by
 * PostgreSQL's GetCommandLogLevel() and the node type, plus the executor and
 * function-execute hooks that add READ / WRITE / FUNCTION lines for what the
 * statement actually runs). A statement's `classes` is the union of the
 * classes pgaudit would log lines under for it, as far as the text shows:
 *
 * - READ: SELECT / VALUES / TABLE, DECLARE CURSOR, COPY … TO; and any
 *   executed statement that reads a relation other than its write target
 *   (INSERT … SELECT FROM, UPDATE … FROM, DELETE … USING, MERGE … USING,
 *   sub-queries, CTEs), CREATE TABLE AS / SELECT INTO / CREATE MATERIALIZED
 *   VIEW (unless WITH NO DATA), REFRESH MATERIALIZED VIEW.
 * - WRITE: INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY … FROM, and any
 *   executed data-modifying CTE (`WITH d AS (DELETE … RETURNING *) SELECT …`
 *   is READ + WRITE; `COPY (DELETE … RETURNING *) TO` too).
 * - FUNCTION: DO; CALL (with MISC, as pgaudit logs `MISC,CALL` plus
 *   `FUNCTION,EXECUTE`); any function call written in an executed statement
 *   (`select f(1)`, `select * from f()`, `insert … values (f())`). pgaudit
 *   logs FUNCTION only for functions outside pg_catalog, which cannot be told
 *   at parse time: every function call written by name counts (so
 *   `select count(*)` is READ + FUNCTION), except SQL-syntax forms the parser
 *   turns into function calls (EXTRACT, SUBSTRING … FROM, TRIM, AT TIME ZONE,
 *   …). Function calls in DDL (defaults, view bodies, index expressions) are
 *   recorded as objects only.
 * - ROLE: GRANT, REVOKE (objects and roles), CREATE/ALTER/DROP ROLE|USER|GROUP,
 *   ALTER ROLE … SET / RENAME, ALTER DEFAULT PRIVILEGES, CREATE/ALTER USER
 *   MAPPING (pgaudit ≥ 16; the PostgreSQL 15 package, pgaudit 1.7, logs user
 *   mappings as DDL).
 * - DDL: every other statement PostgreSQL logs at log_statement = 'ddl'
 *   (including CLUSTER, ALTER SYSTEM, COMMENT, DROP/REASSIGN OWNED,
 *   DROP USER MAPPING, REFRESH MATERIALIZED VIEW).
 * - MISC: the rest (BEGIN/COMMIT/…, FETCH/MOVE, CLOSE, DEALLOCATE, DISCARD,
 *   CHECKPOINT, VACUUM, ANALYZE, REINDEX, LOCK, LISTEN/NOTIFY/UNLISTEN, LOAD,
 *   SHOW, SET CONSTRAINTS, EXECUTE, CALL, EXPLAIN).
 * - MISC_SET: SET and RESET of every kind (SET LOCAL, SET ROLE, SET SESSION
 *   AUTHORIZATION, SET TRANSACTION …, RESET ALL). pgaudit prints these lines
 *   as "MISC" but filters them with the MISC_SET class.
 *
 * Special forms:
 * - EXPLAIN: MISC plus the classes of the explained statement (pgaudit's
 *   executor hook logs them even without ANALYZE; no DDL for a plain EXPLAIN
 *   of CREATE TABLE AS). EXPLAIN ANALYZE of a statement that PostgreSQL logs
 *   as 'mod' (INSERT/UPDATE/DELETE/MERGE) is WRITE without MISC, of
 *   CREATE TABLE AS is DDL without MISC (GetCommandLogLevel follows ANALYZE).
 * - PREPARE x AS …: the classes of the prepared statement (so that policy can
 *   act on it, since EXECUTE cannot be resolved here).
 * - EXECUTE x: MISC only — the prepared statement is not in the text. A caller
 *   that tracks PREPARE per session can substitute its classification.
 * - DECLARE CURSOR: the classes of its query (READ …).
 *
 * Objects: `{ type, schema, name }`, names as the parser returns them
 * (unquoted identifiers folded to lower case), schema only where written.
 * Relations read or written by DML/SELECT/COPY/LOCK/VACUUM/GRANT ON TABLE are
 * `relation` (tables and views cannot be told apart here); statements that
 * say what they create or alter give `table`, `view`, `materialized view`,
 * `sequence`, `index`, `foreign table`, `type`, `domain`, … Other types:
 * `function` (every call written by name, and CREATE/DROP/ALTER FUNCTION),
 * `procedure` (CALL, CREATE PROCEDURE), `role` (GRANT/REVOKE grantees and
 * granted roles, CREATE/ALTER/DROP ROLE, OWNER TO, SET ROLE, SET SESSION
 * AUTHORIZATION; PUBLIC is `public`; CURRENT_USER / SESSION_USER /
 * CURRENT_ROLE are not recorded), `schema`, `database`, `setting` (SET /
 * RESET / SHOW / ALTER … SET name), `channel` (LISTEN / NOTIFY), `sequence`
 * (also the literal argument of nextval/currval/setval), `extension`,
 * `server`, `trigger`, `policy`, `rule`, `publication`, `subscription`, ….
 * CTE names are not objects (a reference that resolves to an in-scope CTE is
 * skipped, honouring WITH RECURSIVE and nested scopes). De-duplicated, in
 * first-seen order of a walk that follows the tree (target first for DML);
 * a relation seen both generically and by kind keeps one entry, typed by kind.
 * The body of DO blocks and string-bodied functions is not analysed.
 */

import { statement } from './classes.js'
import { firstKey, type Node } from './names.js'
import { MISC, classesOf, type Classification, type Walk } from './state.js'

export { AUDIT_CLASSES, type AuditClass, type Classification, type StatementObject } from './state.js'

/**
 * Classes and objects of one parsed statement (`node` from splitStatements).
 * Pure, fast, never throws: a null node (unparseable text) gives no classes
 * and no objects; an unknown node type gives MISC.
 */
export function classifyStatement(node: Record<string, unknown> | null): Classification {
  if (node === null || typeof node !== 'object') return { classes: [], objects: [] }
  const type = firstKey(node)
  if (type === undefined) return { classes: [], objects: [] }
  const body = node[type]
  const w: Walk = { cls: 0, objects: [], scope: null, exec: false, statement }
  try {
    statement(w, type, body !== null && typeof body === 'object' ? (body as Node) : {})
  } catch {
    // A tree shape this code does not expect: keep what was found, never fail the caller.
    if (w.cls === 0) w.cls = MISC
  }
  if (w.cls === 0) w.cls = MISC
  return { classes: classesOf(w.cls), objects: w.objects }
}
