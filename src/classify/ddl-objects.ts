/**
 * The objects a statement names, by statement type: every DDL statement
 * (what it creates, alters or drops, and what that names: owners, servers,
 * schemas, …), plus GRANT / REVOKE and role options. Their classes are
 * decided in classes.ts.
 */

import { ON_RELATION, RELATION_KINDS, defElems, objectType, relationOf, sval, type Node } from './names.js'
import {
  objectRef, objectRefs, rangeVar, roleSpec, roleSpecs, setting, walk, walkFields, walkQuery,
} from './objects.js'
import { READ, add, addNames, type Walk } from './state.js'

export function roleOptions(w: Walk, options: unknown): void {
  // IN ROLE / ROLE / ADMIN / USER lists hold RoleSpecs; PASSWORD and the rest hold no objects.
  for (const e of defElems(options)) {
    const items = ((e.arg as Node | undefined)?.List as Node | undefined)?.items
    if (items) roleSpecs(w, items)
  }
}

export function grant(w: Walk, b: Node): void {
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

export function ddl(w: Walk, type: string, b: Node): void {
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
