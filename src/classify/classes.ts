/**
 * pgaudit's classes for each statement type (see index.ts), with the objects
 * of the statements that are not DDL; DDL objects come from ddl-objects.ts.
 */

import { ddl, grant, roleOptions } from './ddl-objects.js'
import { defElems, firstKey, relationOf, sval, type Node } from './names.js'
import {
  dml, funcCall, objectRefs, rangeVar, roleSpec, roleSpecs, selectStmt, setting, walk, walkFields, walkQuery,
} from './objects.js'
import { DDL, FUNCTION, MISC, MISC_SET, READ, ROLE, WRITE, add, type Walk } from './state.js'

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
export function statement(w: Walk, type: string, b: Node): void {
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
