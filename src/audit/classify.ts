/**
 * pgaudit-compatible statement classes and the objects a statement names,
 * from libpg-query's parse tree (see split.ts). Pure and synchronous: no
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

export type AuditClass = 'READ' | 'WRITE' | 'FUNCTION' | 'ROLE' | 'DDL' | 'MISC' | 'MISC_SET'

/** Every class, in the order `classes` lists them. */
export const AUDIT_CLASSES: readonly AuditClass[] = Object.freeze([
  'READ', 'WRITE', 'FUNCTION', 'ROLE', 'DDL', 'MISC', 'MISC_SET',
] as const)

export interface StatementObject {
  type:
    | 'table'
    | 'view'
    | 'sequence'
    | 'function'
    | 'procedure'
    | 'role'
    | 'schema'
    | 'database'
    | 'index'
    | 'type'
    | 'relation'
    | (string & {})
  schema: string | null
  name: string
}

export interface Classification {
  classes: AuditClass[]
  objects: StatementObject[]
}

type Node = Record<string, unknown>

const READ = 1
const WRITE = 2
const FUNCTION = 4
const ROLE = 8
const DDL = 16
const MISC = 32
const MISC_SET = 64

const CLASS_BITS: ReadonlyArray<readonly [number, AuditClass]> = [
  [READ, 'READ'],
  [WRITE, 'WRITE'],
  [FUNCTION, 'FUNCTION'],
  [ROLE, 'ROLE'],
  [DDL, 'DDL'],
  [MISC, 'MISC'],
  [MISC_SET, 'MISC_SET'],
]

function classesOf(bits: number): AuditClass[] {
  const out: AuditClass[] = []
  for (const [bit, name] of CLASS_BITS) if (bits & bit) out.push(name)
  return out
}

interface Scope {
  names: string[]
  parent: Scope | null
}

interface Walk {
  cls: number
  objects: StatementObject[]
  scope: Scope | null
  /** Whether the part being walked is executed by this statement (DML, SELECT, COPY, …) rather than stored (DDL). */
  exec: boolean
}

/** Statements PostgreSQL logs at log_statement = 'ddl' that pgaudit does not put in ROLE. */
const DDL_TYPES = new Set([
  'CreateSchemaStmt', 'CreateStmt', 'CreateForeignTableStmt', 'CreateTableSpaceStmt', 'DropTableSpaceStmt',
  'AlterTableSpaceOptionsStmt', 'CreateExtensionStmt', 'AlterExtensionStmt', 'AlterExtensionContentsStmt',
  'CreateFdwStmt', 'AlterFdwStmt', 'CreateForeignServerStmt', 'AlterForeignServerStmt', 'DropUserMappingStmt',
  'ImportForeignSchemaStmt', 'DropStmt', 'CommentStmt', 'SecLabelStmt', 'RenameStmt', 'AlterObjectDependsStmt',
  'AlterObjectSchemaStmt', 'AlterOwnerStmt', 'AlterOperatorStmt', 'AlterTypeStmt', 'AlterTableMoveAllStmt',
  'AlterTableStmt', 'AlterDomainStmt', 'DefineStmt', 'CompositeTypeStmt', 'CreateEnumStmt', 'CreateRangeStmt',
  'AlterEnumStmt', 'ViewStmt', 'CreateFunctionStmt', 'AlterFunctionStmt', 'IndexStmt', 'RuleStmt', 'CreateSeqStmt',
  'AlterSeqStmt', 'CreatedbStmt', 'AlterDatabaseStmt', 'AlterDatabaseRefreshCollStmt', 'AlterDatabaseSetStmt',
  'DropdbStmt', 'ClusterStmt', 'CreateTableAsStmt', 'RefreshMatViewStmt', 'AlterSystemStmt', 'CreateTrigStmt',
  'CreateEventTrigStmt', 'AlterEventTrigStmt', 'CreatePLangStmt', 'CreateDomainStmt', 'DropOwnedStmt',
  'ReassignOwnedStmt', 'CreateConversionStmt', 'CreateCastStmt', 'CreateOpClassStmt', 'CreateOpFamilyStmt',
  'CreateTransformStmt', 'AlterOpFamilyStmt', 'CreatePolicyStmt', 'AlterPolicyStmt', 'AlterTSDictionaryStmt',
  'AlterTSConfigurationStmt', 'CreateAmStmt', 'CreatePublicationStmt', 'AlterPublicationStmt',
  'CreateSubscriptionStmt', 'AlterSubscriptionStmt', 'DropSubscriptionStmt', 'CreateStatsStmt', 'AlterStatsStmt',
  'AlterCollationStmt',
])

/** DDL-level statements pgaudit logs as ROLE (pgaudit.c, LOGSTMT_DDL branch). */
const ROLE_TYPES = new Set([
  'CreateRoleStmt', 'AlterRoleStmt', 'AlterRoleSetStmt', 'DropRoleStmt', 'GrantStmt', 'GrantRoleStmt',
  'AlterDefaultPrivilegesStmt', 'CreateUserMappingStmt', 'AlterUserMappingStmt',
])

/** OBJECT_* → object type noun. */
const OBJECT_TYPE: Record<string, string> = {
  OBJECT_TABLE: 'table', OBJECT_VIEW: 'view', OBJECT_MATVIEW: 'materialized view', OBJECT_SEQUENCE: 'sequence',
  OBJECT_INDEX: 'index', OBJECT_FOREIGN_TABLE: 'foreign table', OBJECT_FUNCTION: 'function',
  OBJECT_PROCEDURE: 'procedure', OBJECT_ROUTINE: 'routine', OBJECT_AGGREGATE: 'aggregate', OBJECT_SCHEMA: 'schema',
  OBJECT_DATABASE: 'database', OBJECT_ROLE: 'role', OBJECT_TYPE: 'type', OBJECT_DOMAIN: 'domain',
  OBJECT_EXTENSION: 'extension', OBJECT_TRIGGER: 'trigger', OBJECT_POLICY: 'policy', OBJECT_RULE: 'rule',
  OBJECT_PUBLICATION: 'publication', OBJECT_SUBSCRIPTION: 'subscription', OBJECT_COLLATION: 'collation',
  OBJECT_CONVERSION: 'conversion', OBJECT_OPERATOR: 'operator', OBJECT_OPCLASS: 'operator class',
  OBJECT_OPFAMILY: 'operator family', OBJECT_EVENT_TRIGGER: 'event trigger', OBJECT_FOREIGN_SERVER: 'server',
  OBJECT_FDW: 'foreign data wrapper', OBJECT_STATISTIC_EXT: 'statistics', OBJECT_TABLESPACE: 'tablespace',
  OBJECT_LANGUAGE: 'language', OBJECT_CAST: 'cast', OBJECT_ACCESS_METHOD: 'access method',
  OBJECT_TSCONFIGURATION: 'text search configuration', OBJECT_TSDICTIONARY: 'text search dictionary',
  OBJECT_TSPARSER: 'text search parser', OBJECT_TSTEMPLATE: 'text search template', OBJECT_TRANSFORM: 'transform',
  OBJECT_LARGEOBJECT: 'large object', OBJECT_PARAMETER_ACL: 'setting', OBJECT_COLUMN: 'column',
  OBJECT_TABCONSTRAINT: 'constraint', OBJECT_DOMCONSTRAINT: 'constraint', OBJECT_ATTRIBUTE: 'attribute',
  OBJECT_DEFAULT: 'default', OBJECT_DEFACL: 'default privileges', OBJECT_AMOP: 'operator', OBJECT_AMPROC: 'function',
  OBJECT_PUBLICATION_NAMESPACE: 'schema', OBJECT_PUBLICATION_REL: 'relation', OBJECT_USER_MAPPING: 'user mapping',
}

/** Kinds whose (qualified) name ends with a relation name, then the object's own name. */
const ON_RELATION = new Set(['OBJECT_TRIGGER', 'OBJECT_POLICY', 'OBJECT_RULE', 'OBJECT_TABCONSTRAINT'])
/** Kinds whose qualified name is relation + column. */
const COLUMN_OF = new Set(['OBJECT_COLUMN', 'OBJECT_ATTRIBUTE'])
/** Relation kinds (their names are RangeVars or relation names). */
const RELATION_KINDS = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_INDEX', 'OBJECT_FOREIGN_TABLE',
])

function objectType(kind: unknown): string {
  return OBJECT_TYPE[kind as string] ?? String(kind ?? 'object').replace(/^OBJECT_/, '').toLowerCase().replace(/_/g, ' ')
}

function firstKey(o: Node): string | undefined {
  for (const k in o) return k
  return undefined
}

/** Types of relations (one namespace in PostgreSQL: a name is only one of them). */
const RELATION_TYPES = new Set(['relation', 'table', 'view', 'materialized view', 'foreign table', 'sequence'])

function add(w: Walk, type: string, schema: string | null, name: string): void {
  const objs = w.objects
  const rel = RELATION_TYPES.has(type)
  for (let i = 0; i < objs.length; i++) {
    const o = objs[i]!
    if (o.name !== name || o.schema !== schema) continue
    if (o.type === type) return
    if (rel && RELATION_TYPES.has(o.type)) {
      // The same relation seen generically and by its kind: keep one entry, with the more precise type.
      if (o.type === 'relation') o.type = type
      return
    }
  }
  objs.push({ type, schema, name })
}

function sval(n: unknown): string | undefined {
  if (n === null || typeof n !== 'object') return undefined
  const s = (n as Node).String as Node | undefined
  return s !== undefined && typeof s.sval === 'string' ? s.sval : undefined
}

/** Adds an object named by a list of String nodes: name, schema.name or catalog.schema.name. */
function addNames(w: Walk, type: string, names: unknown, dropLast = 0): void {
  if (!Array.isArray(names)) return
  const n = names.length - dropLast
  if (n <= 0) return
  const name = sval(names[n - 1])
  if (name === undefined) return
  const schema = n >= 2 ? (sval(names[n - 2]) ?? null) : null
  add(w, type, schema, name)
}

function inScope(scope: Scope | null, name: string): boolean {
  for (let s = scope; s !== null; s = s.parent) {
    const names = s.names
    for (let i = 0; i < names.length; i++) if (names[i] === name) return true
  }
  return false
}

/**
 * A RangeVar: `read` marks a relation the statement reads (not its write
 * target); `target` marks a reference that can never be a CTE (DDL names,
 * DML targets).
 */
function rangeVar(w: Walk, rv: unknown, type: string, read: boolean, target: boolean): void {
  if (rv === null || typeof rv !== 'object') return
  const r = rv as Node
  const name = r.relname
  if (typeof name !== 'string') return
  const schema = typeof r.schemaname === 'string' ? r.schemaname : null
  if (!target && schema === null && inScope(w.scope, name)) return
  if (read && w.exec) w.cls |= READ
  add(w, type, schema, name)
}

/** A RangeVar field that may be wrapped ({ RangeVar: {...} }) or not. */
function relationOf(v: unknown): unknown {
  if (v === null || typeof v !== 'object') return undefined
  const o = v as Node
  return o.RangeVar ?? o
}

function roleSpec(w: Walk, rs: unknown): void {
  if (rs === null || typeof rs !== 'object') return
  const r = ((rs as Node).RoleSpec ?? rs) as Node
  if (r.roletype === 'ROLESPEC_CSTRING' && typeof r.rolename === 'string') add(w, 'role', null, r.rolename)
  else if (r.roletype === 'ROLESPEC_PUBLIC') add(w, 'role', null, 'public')
}

function roleSpecs(w: Walk, list: unknown): void {
  if (Array.isArray(list)) for (const r of list) roleSpec(w, r)
}

const SEQUENCE_FUNCS = new Set(['nextval', 'currval', 'setval'])

function funcCall(w: Walk, f: Node, type = 'function'): void {
  const names = f.funcname
  if (f.funcformat !== 'COERCE_SQL_SYNTAX' && Array.isArray(names)) {
    addNames(w, type, names)
    if (w.exec) w.cls |= FUNCTION
    // nextval('seq'): the literal names a sequence.
    const last = sval(names[names.length - 1])
    if (last !== undefined && SEQUENCE_FUNCS.has(last) && (names.length === 1 || sval(names[0]) === 'pg_catalog')) {
      sequenceArg(w, Array.isArray(f.args) ? f.args[0] : undefined)
    }
  }
  for (const k in f) if (k !== 'funcname') walk(w, f[k])
}

function sequenceArg(w: Walk, arg: unknown): void {
  let a = arg as Node | undefined
  if (a?.TypeCast) a = (a.TypeCast as Node).arg as Node | undefined
  const c = a?.A_Const as Node | undefined
  const s = (c?.sval as Node | undefined)?.sval
  if (typeof s !== 'string') return
  const parts = parseQualifiedName(s)
  if (parts === null || parts.length === 0 || parts.length > 3) return
  add(w, 'sequence', parts.length >= 2 ? parts[parts.length - 2]! : null, parts[parts.length - 1]!)
}

/** Parses a regclass-style text name: unquoted parts fold to lower case, "quoted" parts keep case. */
function parseQualifiedName(s: string): string[] | null {
  const out: string[] = []
  let i = 0
  const n = s.length
  while (i < n && s[i] === ' ') i++
  for (;;) {
    let part = ''
    if (s[i] === '"') {
      i++
      for (;;) {
        if (i >= n) return null
        if (s[i] === '"') {
          if (s[i + 1] === '"') { part += '"'; i += 2; continue }
          i++
          break
        }
        part += s[i]
        i++
      }
    } else {
      const start = i
      while (i < n && s[i] !== '.' && s[i] !== ' ' && s[i] !== '"') i++
      part = s.slice(start, i).toLowerCase()
      if (part === '') return null
    }
    out.push(part)
    while (i < n && s[i] === ' ') i++
    if (i >= n) return out
    if (s[i] !== '.') return null
    i++
    while (i < n && s[i] === ' ') i++
  }
}

/** Enters a WITH clause: CTE names become visible (all at once if RECURSIVE, else one by one). */
function enterWith(w: Walk, withClause: unknown): void {
  if (withClause === null || typeof withClause !== 'object') return
  const wc = ((withClause as Node).WithClause ?? withClause) as Node
  const ctes = Array.isArray(wc.ctes) ? wc.ctes : []
  const names: string[] = []
  w.scope = { names, parent: w.scope }
  if (wc.recursive === true) {
    for (const c of ctes) {
      const name = ((c as Node).CommonTableExpr as Node | undefined)?.ctename
      if (typeof name === 'string') names.push(name)
    }
    for (const c of ctes) walk(w, ((c as Node).CommonTableExpr as Node | undefined)?.ctequery)
  } else {
    for (const c of ctes) {
      const cte = (c as Node).CommonTableExpr as Node | undefined
      if (cte === undefined) continue
      walk(w, cte.ctequery)
      if (typeof cte.ctename === 'string') names.push(cte.ctename)
    }
  }
}

function selectStmt(w: Walk, b: Node): void {
  const saved = w.scope
  if (b.withClause) enterWith(w, b.withClause)
  for (const k in b) {
    // lockingClause (FOR UPDATE OF a) names FROM items or aliases, not relations; intoClause is handled by the caller.
    if (k === 'withClause' || k === 'intoClause' || k === 'lockingClause') continue
    walk(w, b[k])
  }
  w.scope = saved
}

function dml(w: Walk, b: Node): void {
  if (w.exec) w.cls |= WRITE
  const saved = w.scope
  if (b.withClause) enterWith(w, b.withClause)
  rangeVar(w, b.relation, 'relation', false, true)
  for (const k in b) {
    if (k === 'withClause' || k === 'relation') continue
    walk(w, b[k])
  }
  w.scope = saved
}

/** Node types that never contain objects: skipped without walking. */
const LEAF = new Set([
  'A_Const', 'ColumnRef', 'ParamRef', 'String', 'Integer', 'Float', 'Boolean', 'BitString', 'A_Star', 'TypeName',
  'SQLValueFunction', 'ObjectWithArgs', 'LockingClause', 'FunctionParameter', 'SetToDefault',
])

function visit(w: Walk, type: string, b: Node): void {
  if (LEAF.has(type)) return
  switch (type) {
    case 'RangeVar':
      rangeVar(w, b, 'relation', true, false)
      return
    case 'FuncCall':
      funcCall(w, b)
      return
    case 'RoleSpec':
      roleSpec(w, b)
      return
    case 'SelectStmt':
      selectStmt(w, b)
      return
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      dml(w, b)
      return
    case 'TypeCast':
      walk(w, b.arg)
      return
    case 'CommonTableExpr':
      walk(w, b.ctequery)
      return
    default:
      // Statements nested in other statements (CREATE SCHEMA elements, rule actions, BEGIN ATOMIC bodies).
      if (type.endsWith('Stmt')) {
        statement(w, type, b)
        return
      }
      for (const k in b) {
        const v = b[k]
        if (v !== null && typeof v === 'object') walk(w, v)
      }
  }
}

function walk(w: Walk, v: unknown): void {
  if (v === null || typeof v !== 'object') return
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const x = v[i]
      if (x !== null && typeof x === 'object') walk(w, x)
    }
    return
  }
  const o = v as Node
  const key = firstKey(o)
  if (key === undefined) return
  const c = key.charCodeAt(0)
  if (c >= 65 && c <= 90) {
    // A wrapped node: { TypeName: {...} }.
    visit(w, key, o[key] as Node)
    return
  }
  // An unwrapped struct (a typed field of its parent): recognise the few that matter by shape.
  if (typeof o.relname === 'string') {
    rangeVar(w, o, 'relation', true, false)
    return
  }
  if (typeof o.roletype === 'string') {
    roleSpec(w, o)
    return
  }
  if (Array.isArray(o.ctes)) return // a WITH clause outside a statement we know: handled by its statement
  if (Array.isArray(o.names) && o.typemod !== undefined) return // an unwrapped TypeName
  for (const k in o) {
    const x = o[k]
    if (x !== null && typeof x === 'object') walk(w, x)
  }
}

/** Walks every field of `b` except those named. */
function walkFields(w: Walk, b: Node, skip1?: string, skip2?: string, skip3?: string): void {
  for (const k in b) {
    if (k === skip1 || k === skip2 || k === skip3) continue
    const v = b[k]
    if (v !== null && typeof v === 'object') walk(w, v)
  }
}

/** An object named by kind and a name node (List of String, String, ObjectWithArgs, TypeName, RangeVar). */
function objectRef(w: Walk, kind: unknown, ref: unknown): void {
  if (ref === null || typeof ref !== 'object') return
  const type = objectType(kind)
  const o = ref as Node
  if (o.List) {
    const items = (o.List as Node).items
    if (!Array.isArray(items)) return
    if (ON_RELATION.has(kind as string)) {
      // DROP TRIGGER t ON s.r → [s, r, t]
      addNames(w, 'relation', items, 1)
      const last = sval(items[items.length - 1])
      if (last !== undefined) add(w, type, null, last)
    } else if (COLUMN_OF.has(kind as string)) {
      addNames(w, 'relation', items, 1)
    } else {
      addNames(w, type, items)
    }
    return
  }
  if (o.String) {
    const s = sval(o)
    if (s !== undefined) add(w, type, null, s)
    return
  }
  if (o.ObjectWithArgs) {
    addNames(w, type, (o.ObjectWithArgs as Node).objname)
    return
  }
  if (Array.isArray(o.objname)) {
    addNames(w, type, o.objname)
    return
  }
  if (o.TypeName) {
    addNames(w, type, (o.TypeName as Node).names)
    return
  }
  if (o.RangeVar || typeof o.relname === 'string') {
    rangeVar(w, relationOf(o), type, false, true)
    return
  }
  if (Array.isArray(o.names)) addNames(w, type, o.names)
}

function objectRefs(w: Walk, kind: unknown, list: unknown): void {
  if (Array.isArray(list)) for (const x of list) objectRef(w, kind, x)
}

/** SET / RESET / SHOW and the `setstmt` of ALTER ROLE|DATABASE|SYSTEM … SET. */
function setting(w: Walk, v: Node | undefined): void {
  if (!v) return
  const name = v.name
  if (typeof name !== 'string' || v.kind === 'VAR_SET_MULTI' || v.kind === 'VAR_RESET_ALL') return
  add(w, 'setting', null, name)
  if ((name === 'role' || name === 'session_authorization') && v.kind === 'VAR_SET_VALUE' && Array.isArray(v.args)) {
    const c = (v.args[0] as Node | undefined)?.A_Const as Node | undefined
    const role = (c?.sval as Node | undefined)?.sval
    if (typeof role === 'string' && !(name === 'role' && role === 'none')) add(w, 'role', null, role)
  }
}

function defElems(list: unknown): Node[] {
  if (!Array.isArray(list)) return []
  const out: Node[] = []
  for (const d of list) {
    const e = (d as Node | null)?.DefElem as Node | undefined
    if (e) out.push(e)
  }
  return out
}

function explainAnalyze(options: unknown): boolean {
  // As GetCommandLogLevel() and explain.c: the last ANALYZE option wins (defGetBoolean semantics).
  let analyze = false
  for (const e of defElems(options)) {
    if (e.defname !== 'analyze') continue
    const arg = e.arg as Node | undefined
    if (arg === undefined || arg === null) {
      analyze = true
      continue
    }
    const b = arg.Boolean as Node | undefined
    const i = arg.Integer as Node | undefined
    const s = sval(arg)
    if (b) analyze = b.boolval === true
    else if (i) analyze = typeof i.ival === 'number' && i.ival !== 0
    else if (s !== undefined) analyze = !['false', 'off', 'no', '0', 'of', 'f', 'n'].includes(s.toLowerCase())
    else analyze = true
  }
  return analyze
}

/** PostgreSQL's GetCommandLogLevel() for the statements EXPLAIN ANALYZE can run. */
function logLevel(type: string, b: Node): 'mod' | 'ddl' | 'all' {
  switch (type) {
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      return 'mod'
    case 'SelectStmt':
      return b.intoClause ? 'ddl' : 'all'
    case 'CreateTableAsStmt':
      return 'ddl'
    default:
      return 'all'
  }
}

/** Classifies one statement node into `w` (also used for statements nested in statements). */
function statement(w: Walk, type: string, b: Node): void {
  const outerExec = w.exec
  try {
    statementInner(w, type, b)
  } finally {
    w.exec = outerExec
  }
}

function statementInner(w: Walk, type: string, b: Node): void {
  switch (type) {
    // ---- READ / WRITE ----
    case 'SelectStmt': {
      w.exec = true
      w.cls |= READ
      const into = b.intoClause as Node | undefined
      if (into) {
        w.cls |= DDL
        rangeVar(w, into.rel, 'table', false, true)
      }
      selectStmt(w, b)
      return
    }
    case 'InsertStmt':
    case 'UpdateStmt':
    case 'DeleteStmt':
    case 'MergeStmt':
      w.exec = true
      dml(w, b)
      return
    case 'CopyStmt':
      w.exec = true
      w.cls |= b.is_from === true ? WRITE : READ
      rangeVar(w, b.relation, 'relation', false, true)
      walk(w, b.query)
      walk(w, b.whereClause)
      return
    case 'TruncateStmt':
      w.cls |= WRITE
      if (Array.isArray(b.relations)) for (const r of b.relations) rangeVar(w, relationOf(r), 'table', false, true)
      return
    case 'DeclareCursorStmt':
    case 'PrepareStmt':
      // The classes of the query (pgaudit logs PREPARE/DECLARE CURSOR with the query's class).
      walkQuery(w, b.query)
      return
    case 'ExplainStmt': {
      const q = b.query as Node | undefined
      const qType = q ? firstKey(q) : undefined
      if (!q || qType === undefined) {
        w.cls |= MISC
        return
      }
      const qBody = q[qType] as Node
      const before = w.cls
      w.cls = 0
      statement(w, qType, qBody)
      let inner = w.cls
      if (explainAnalyze(b.options)) {
        const level = logLevel(qType, qBody)
        inner |= level === 'mod' ? WRITE : level === 'ddl' ? DDL : MISC
      } else {
        inner = (inner & ~DDL) | MISC
      }
      w.cls = before | inner
      return
    }
    case 'ExecuteStmt':
      w.cls |= MISC
      w.exec = true
      walk(w, b.params)
      return

    // ---- FUNCTION ----
    case 'DoStmt':
      w.cls |= FUNCTION
      return
    case 'CallStmt': {
      w.cls |= FUNCTION | MISC
      w.exec = true
      const f = b.funccall as Node | undefined
      if (f) funcCall(w, f, 'procedure')
      return
    }

    // ---- MISC_SET / MISC ----
    case 'VariableSetStmt':
      w.cls |= MISC_SET
      setting(w, b)
      return
    case 'VariableShowStmt':
      w.cls |= MISC
      if (typeof b.name === 'string' && b.name !== 'all') add(w, 'setting', null, b.name)
      return
    case 'ListenStmt':
    case 'NotifyStmt':
    case 'UnlistenStmt':
      w.cls |= MISC
      if (typeof b.conditionname === 'string') add(w, 'channel', null, b.conditionname)
      return
    case 'ReindexStmt': {
      w.cls |= MISC
      const kind = b.kind
      if (b.relation) rangeVar(w, b.relation, kind === 'REINDEX_OBJECT_INDEX' ? 'index' : 'table', false, true)
      if (typeof b.name === 'string') add(w, kind === 'REINDEX_OBJECT_SCHEMA' ? 'schema' : 'database', null, b.name)
      return
    }
    case 'ConstraintsSetStmt': // its RangeVars are constraint names
    case 'TransactionStmt':
    case 'ClosePortalStmt':
    case 'FetchStmt':
    case 'DeallocateStmt':
    case 'DiscardStmt':
    case 'CheckPointStmt':
    case 'LoadStmt':
      w.cls |= MISC
      return
    case 'VacuumStmt':
    case 'LockStmt':
      w.cls |= MISC
      w.exec = false
      walkFields(w, b, 'options')
      return

    // ---- ROLE ----
    case 'CreateRoleStmt':
      w.cls |= ROLE
      if (typeof b.role === 'string') add(w, 'role', null, b.role)
      roleOptions(w, b.options)
      return
    case 'AlterRoleStmt':
      w.cls |= ROLE
      roleSpec(w, b.role)
      roleOptions(w, b.options)
      return
    case 'AlterRoleSetStmt':
      w.cls |= ROLE
      roleSpec(w, b.role)
      if (typeof b.database === 'string') add(w, 'database', null, b.database)
      setting(w, b.setstmt as Node | undefined)
      return
    case 'DropRoleStmt':
      w.cls |= ROLE
      roleSpecs(w, b.roles)
      return
    case 'GrantStmt':
      w.cls |= ROLE
      grant(w, b)
      return
    case 'GrantRoleStmt':
      w.cls |= ROLE
      if (Array.isArray(b.granted_roles)) {
        for (const p of b.granted_roles) {
          const name = ((p as Node).AccessPriv as Node | undefined)?.priv_name
          if (typeof name === 'string') add(w, 'role', null, name)
        }
      }
      roleSpecs(w, b.grantee_roles)
      roleSpec(w, b.grantor)
      return
    case 'AlterDefaultPrivilegesStmt':
      w.cls |= ROLE
      for (const e of defElems(b.options)) {
        const items = ((e.arg as Node | undefined)?.List as Node | undefined)?.items
        if (e.defname === 'schemas') objectRefs(w, 'OBJECT_SCHEMA', items)
        else roleSpecs(w, items)
      }
      if (b.action) {
        const g = b.action as Node
        roleSpecs(w, g.grantees)
      }
      return
    case 'CreateUserMappingStmt':
    case 'AlterUserMappingStmt':
      w.cls |= ROLE
      roleSpec(w, b.user)
      if (typeof b.servername === 'string') add(w, 'server', null, b.servername)
      return
  }

  // ---- DDL (and what is left) ----
  w.exec = false
  if (type === 'RenameStmt' && b.renameType === 'OBJECT_ROLE') w.cls |= ROLE
  else if (DDL_TYPES.has(type)) w.cls |= DDL
  else {
    // Not a statement PostgreSQL knows a log level for (or a newer one): MISC, as GetCommandLogLevel's default.
    w.cls |= MISC
    return
  }
  ddl(w, type, b)
}

function walkQuery(w: Walk, q: unknown): void {
  if (q === null || typeof q !== 'object') return
  const t = firstKey(q as Node)
  if (t !== undefined) statement(w, t, (q as Node)[t] as Node)
}

function roleOptions(w: Walk, options: unknown): void {
  // IN ROLE / ROLE / ADMIN / USER lists hold RoleSpecs; PASSWORD and the rest hold no objects.
  for (const e of defElems(options)) {
    const items = ((e.arg as Node | undefined)?.List as Node | undefined)?.items
    if (items) roleSpecs(w, items)
  }
}

function grant(w: Walk, b: Node): void {
  const kind = b.objtype
  if (b.targtype === 'ACL_TARGET_ALL_IN_SCHEMA') {
    objectRefs(w, 'OBJECT_SCHEMA', b.objects)
  } else if (b.targtype === 'ACL_TARGET_OBJECT' && Array.isArray(b.objects)) {
    for (const o of b.objects) {
      if ((o as Node).RangeVar) {
        // GRANT … ON [TABLE] names tables, views, sequences alike.
        rangeVar(w, (o as Node).RangeVar, kind === 'OBJECT_SEQUENCE' ? 'sequence' : 'relation', false, true)
      } else {
        objectRef(w, kind, o)
      }
    }
  }
  roleSpecs(w, b.grantees)
  roleSpec(w, b.grantor)
}

function ddl(w: Walk, type: string, b: Node): void {
  switch (type) {
    case 'CreateStmt':
      rangeVar(w, b.relation, 'table', false, true)
      if (Array.isArray(b.inhRelations)) for (const r of b.inhRelations) rangeVar(w, relationOf(r), 'table', false, true)
      walkFields(w, b, 'relation', 'inhRelations')
      return
    case 'CreateForeignTableStmt': {
      const base = (b.base ?? {}) as Node
      rangeVar(w, base.relation, 'foreign table', false, true)
      if (Array.isArray(base.inhRelations)) {
        for (const r of base.inhRelations) rangeVar(w, relationOf(r), 'table', false, true)
      }
      walkFields(w, base, 'relation', 'inhRelations')
      if (typeof b.servername === 'string') add(w, 'server', null, b.servername)
      return
    }
    case 'ViewStmt':
      rangeVar(w, b.view, 'view', false, true)
      walk(w, b.query)
      return
    case 'CreateTableAsStmt': {
      const into = (b.into ?? {}) as Node
      rangeVar(w, into.rel, b.objtype === 'OBJECT_MATVIEW' ? 'materialized view' : 'table', false, true)
      const q = b.query as Node | undefined
      if (q?.ExecuteStmt) {
        // CREATE TABLE … AS EXECUTE q: the prepared statement is not in the text (see EXECUTE).
        w.exec = true
        walk(w, (q.ExecuteStmt as Node).params)
        w.exec = false
      } else if (into.skipData !== true) {
        // The query runs now: its reads, writes and function calls are this statement's.
        walkQuery(w, b.query)
        w.exec = false
      } else {
        walk(w, b.query)
      }
      return
    }
    case 'RefreshMatViewStmt':
      if (b.skipData !== true) w.cls |= READ
      rangeVar(w, b.relation, 'materialized view', false, true)
      return
    case 'CreateSeqStmt':
    case 'AlterSeqStmt':
      rangeVar(w, b.sequence, 'sequence', false, true)
      return
    case 'IndexStmt': {
      const rel = b.relation as Node | undefined
      if (typeof b.idxname === 'string') {
        add(w, 'index', rel && typeof rel.schemaname === 'string' ? rel.schemaname : null, b.idxname)
      }
      rangeVar(w, rel, 'relation', false, true)
      walkFields(w, b, 'relation')
      return
    }
    case 'CreateFunctionStmt':
      addNames(w, b.is_procedure === true ? 'procedure' : 'function', b.funcname)
      walk(w, b.sql_body)
      return
    case 'AlterFunctionStmt':
      objectRef(w, b.objtype, b.func)
      return
    case 'CreateTrigStmt':
      if (typeof b.trigname === 'string') add(w, 'trigger', null, b.trigname)
      rangeVar(w, b.relation, 'relation', false, true)
      addNames(w, 'function', b.funcname)
      rangeVar(w, b.constrrel, 'relation', false, true)
      walk(w, b.whenClause)
      return
    case 'CreateEventTrigStmt':
    case 'AlterEventTrigStmt':
      if (typeof b.trigname === 'string') add(w, 'event trigger', null, b.trigname)
      addNames(w, 'function', b.funcname)
      return
    case 'CreatePolicyStmt':
    case 'AlterPolicyStmt':
      if (typeof b.policy_name === 'string') add(w, 'policy', null, b.policy_name)
      rangeVar(w, b.table, 'relation', false, true)
      walkFields(w, b, 'table')
      return
    case 'RuleStmt':
      if (typeof b.rulename === 'string') add(w, 'rule', null, b.rulename)
      rangeVar(w, b.relation, 'relation', false, true)
      walk(w, b.whereClause)
      walk(w, b.actions)
      return
    case 'CreateSchemaStmt': {
      const owner = b.authrole as Node | undefined
      const name = typeof b.schemaname === 'string' ? b.schemaname
        : owner?.roletype === 'ROLESPEC_CSTRING' ? owner.rolename : undefined
      if (typeof name === 'string') add(w, 'schema', null, name)
      roleSpec(w, owner)
      // Elements (CREATE TABLE, GRANT, …) are statements of their own; GRANT adds ROLE as in pgaudit.
      walk(w, b.schemaElts)
      return
    }
    case 'CreatedbStmt':
      if (typeof b.dbname === 'string') add(w, 'database', null, b.dbname)
      for (const e of defElems(b.options)) {
        const s = sval(e.arg)
        if (e.defname === 'owner' && s !== undefined) add(w, 'role', null, s)
      }
      return
    case 'DropdbStmt':
    case 'AlterDatabaseStmt':
    case 'AlterDatabaseRefreshCollStmt':
      if (typeof b.dbname === 'string') add(w, 'database', null, b.dbname)
      return
    case 'AlterDatabaseSetStmt':
      if (typeof b.dbname === 'string') add(w, 'database', null, b.dbname)
      setting(w, b.setstmt as Node | undefined)
      return
    case 'AlterSystemStmt':
      setting(w, b.setstmt as Node | undefined)
      return
    case 'DropStmt':
      objectRefs(w, b.removeType, b.objects)
      return
    case 'CommentStmt':
    case 'SecLabelStmt':
      objectRef(w, b.objtype, b.object)
      return
    case 'RenameStmt':
      rename(w, b)
      return
    case 'AlterOwnerStmt':
      if (b.relation) rangeVar(w, b.relation, objectType(b.objectType), false, true)
      objectRef(w, b.objectType, b.object)
      roleSpec(w, b.newowner)
      return
    case 'AlterObjectSchemaStmt':
      if (b.relation) rangeVar(w, b.relation, objectType(b.objectType), false, true)
      objectRef(w, b.objectType, b.object)
      if (typeof b.newschema === 'string') add(w, 'schema', null, b.newschema)
      return
    case 'AlterObjectDependsStmt':
      if (b.relation) rangeVar(w, b.relation, objectType(b.objectType), false, true)
      objectRef(w, b.objectType, b.object)
      if (b.extname) objectRef(w, 'OBJECT_EXTENSION', b.extname)
      return
    case 'AlterTableStmt':
      rangeVar(w, b.relation, objectType(b.objtype ?? 'OBJECT_TABLE'), false, true)
      walk(w, b.cmds)
      return
    case 'ClusterStmt':
      rangeVar(w, b.relation, 'relation', false, true)
      if (typeof b.indexname === 'string') {
        const rel = b.relation as Node | undefined
        add(w, 'index', rel && typeof rel.schemaname === 'string' ? rel.schemaname : null, b.indexname)
      }
      return
    case 'DefineStmt':
      addNames(w, objectType(b.kind), b.defnames)
      return
    case 'CreateEnumStmt':
    case 'CreateRangeStmt':
    case 'AlterEnumStmt':
    case 'AlterTypeStmt':
      addNames(w, 'type', b.typeName)
      return
    case 'CompositeTypeStmt':
      rangeVar(w, b.typevar, 'type', false, true)
      return
    case 'CreateDomainStmt':
      addNames(w, 'domain', b.domainname)
      walk(w, b.constraints)
      return
    case 'AlterDomainStmt':
      addNames(w, 'domain', b.typeName)
      walk(w, b.def)
      return
    case 'CreateExtensionStmt':
    case 'AlterExtensionStmt':
      if (typeof b.extname === 'string') add(w, 'extension', null, b.extname)
      for (const e of defElems(b.options)) {
        const s = sval(e.arg)
        if (e.defname === 'schema' && s !== undefined) add(w, 'schema', null, s)
      }
      return
    case 'AlterExtensionContentsStmt':
      if (typeof b.extname === 'string') add(w, 'extension', null, b.extname)
      objectRef(w, b.objtype, b.object)
      return
    case 'CreateFdwStmt':
    case 'AlterFdwStmt':
      if (typeof b.fdwname === 'string') add(w, 'foreign data wrapper', null, b.fdwname)
      return
    case 'CreateForeignServerStmt':
    case 'AlterForeignServerStmt':
      if (typeof b.servername === 'string') add(w, 'server', null, b.servername)
      return
    case 'DropUserMappingStmt':
      roleSpec(w, b.user)
      if (typeof b.servername === 'string') add(w, 'server', null, b.servername)
      return
    case 'ImportForeignSchemaStmt':
      if (typeof b.server_name === 'string') add(w, 'server', null, b.server_name)
      if (typeof b.local_schema === 'string') add(w, 'schema', null, b.local_schema)
      return
    case 'CreatePublicationStmt':
    case 'AlterPublicationStmt':
      if (typeof b.pubname === 'string') add(w, 'publication', null, b.pubname)
      walk(w, b.pubobjects)
      return
    case 'CreateSubscriptionStmt':
    case 'AlterSubscriptionStmt':
    case 'DropSubscriptionStmt':
      if (typeof b.subname === 'string') add(w, 'subscription', null, b.subname)
      return
    case 'CreateTableSpaceStmt':
    case 'DropTableSpaceStmt':
    case 'AlterTableSpaceOptionsStmt':
      if (typeof b.tablespacename === 'string') add(w, 'tablespace', null, b.tablespacename)
      roleSpec(w, b.owner)
      return
    case 'CreateStatsStmt':
    case 'AlterStatsStmt':
      addNames(w, 'statistics', b.defnames)
      walk(w, b.relations)
      return
    case 'CreateCastStmt':
      objectRef(w, 'OBJECT_FUNCTION', b.func)
      return
    case 'CreateConversionStmt':
      addNames(w, 'conversion', b.conversion_name)
      addNames(w, 'function', b.func_name)
      return
    case 'CreatePLangStmt':
      if (typeof b.plname === 'string') add(w, 'language', null, b.plname)
      return
    case 'CreateAmStmt':
      if (typeof b.amname === 'string') add(w, 'access method', null, b.amname)
      addNames(w, 'function', b.handler_name)
      return
    case 'CreateOpClassStmt':
      addNames(w, 'operator class', b.opclassname)
      return
    case 'CreateOpFamilyStmt':
    case 'AlterOpFamilyStmt':
      addNames(w, 'operator family', b.opfamilyname)
      return
    case 'AlterOperatorStmt':
      objectRef(w, 'OBJECT_OPERATOR', b.opername)
      return
    case 'AlterTSDictionaryStmt':
      addNames(w, 'text search dictionary', b.dictname)
      return
    case 'AlterTSConfigurationStmt':
      addNames(w, 'text search configuration', b.cfgname)
      return
    case 'AlterCollationStmt':
      addNames(w, 'collation', b.collname)
      return
    case 'DropOwnedStmt':
    case 'ReassignOwnedStmt':
      roleSpecs(w, b.roles)
      roleSpec(w, b.newrole)
      return
    default:
      walkFields(w, b, 'options')
  }
}

/** Renames whose new name is a new name for the same kind of object (not a column, constraint, …). */
const RENAMES_OBJECT = new Set([
  'OBJECT_TABLE', 'OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_INDEX', 'OBJECT_FOREIGN_TABLE',
  'OBJECT_ROLE', 'OBJECT_SCHEMA', 'OBJECT_DATABASE', 'OBJECT_FUNCTION', 'OBJECT_PROCEDURE', 'OBJECT_ROUTINE',
  'OBJECT_AGGREGATE', 'OBJECT_TYPE', 'OBJECT_DOMAIN', 'OBJECT_TABLESPACE', 'OBJECT_FOREIGN_SERVER',
  'OBJECT_PUBLICATION', 'OBJECT_SUBSCRIPTION', 'OBJECT_EVENT_TRIGGER', 'OBJECT_FDW', 'OBJECT_LANGUAGE',
  'OBJECT_COLLATION', 'OBJECT_CONVERSION', 'OBJECT_STATISTIC_EXT',
])

function rename(w: Walk, b: Node): void {
  const kind = b.renameType as string
  const rel = b.relation as Node | undefined
  let schema: string | null = null
  if (rel) {
    // ALTER TABLE t RENAME …: for a column/constraint/trigger/policy/rule rename the relation is of relationType.
    const relKind = RENAMES_OBJECT.has(kind) ? kind : (b.relationType as string)
    rangeVar(w, rel, RELATION_KINDS.has(relKind) ? objectType(relKind) : 'relation', false, true)
    schema = typeof rel.schemaname === 'string' ? rel.schemaname : null
    if (ON_RELATION.has(kind) && typeof b.subname === 'string') add(w, objectType(kind), null, b.subname)
  } else if (b.object) {
    objectRef(w, kind, b.object)
    const last = w.objects[w.objects.length - 1]
    if (last) schema = last.schema
  } else if (typeof b.subname === 'string') {
    add(w, objectType(kind), null, b.subname)
  }
  if (RENAMES_OBJECT.has(kind) && typeof b.newname === 'string') add(w, objectType(kind), schema, b.newname)
}

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
  const w: Walk = { cls: 0, objects: [], scope: null, exec: false }
  try {
    statement(w, type, body !== null && typeof body === 'object' ? (body as Node) : {})
  } catch {
    // A tree shape this code does not expect: keep what was found, never fail the caller.
    if (w.cls === 0) w.cls = MISC
  }
  if (w.cls === 0) w.cls = MISC
  return { classes: classesOf(w.cls), objects: w.objects }
}
