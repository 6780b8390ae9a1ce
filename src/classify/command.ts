/**
 * The command tag-style name of a parsed statement, as PostgreSQL's
 * CreateCommandName() would report it (SELECT, INSERT, CREATE TABLE, ALTER
 * ROLE, …). Derived from the parse tree so that statements which fail — and
 * therefore get no CommandComplete tag — are still named.
 */

import { TAGGED_KIND_NOUNS } from './object-kinds.js'

type Node = Record<string, unknown>

/** Node types whose tag does not depend on their contents. */
const FIXED: Record<string, string> = {
  InsertStmt: 'INSERT',
  UpdateStmt: 'UPDATE',
  DeleteStmt: 'DELETE',
  MergeStmt: 'MERGE',
  CopyStmt: 'COPY',
  ExplainStmt: 'EXPLAIN',
  CallStmt: 'CALL',
  DoStmt: 'DO',
  CreateRoleStmt: 'CREATE ROLE',
  AlterRoleStmt: 'ALTER ROLE',
  AlterRoleSetStmt: 'ALTER ROLE',
  DropRoleStmt: 'DROP ROLE',
  CreateSchemaStmt: 'CREATE SCHEMA',
  CreateStmt: 'CREATE TABLE',
  IndexStmt: 'CREATE INDEX',
  ViewStmt: 'CREATE VIEW',
  CreateSeqStmt: 'CREATE SEQUENCE',
  AlterSeqStmt: 'ALTER SEQUENCE',
  CreateTrigStmt: 'CREATE TRIGGER',
  CreatedbStmt: 'CREATE DATABASE',
  DropdbStmt: 'DROP DATABASE',
  AlterDatabaseStmt: 'ALTER DATABASE',
  AlterDatabaseSetStmt: 'ALTER DATABASE',
  CreateExtensionStmt: 'CREATE EXTENSION',
  AlterExtensionStmt: 'ALTER EXTENSION',
  CreateEnumStmt: 'CREATE TYPE',
  CompositeTypeStmt: 'CREATE TYPE',
  CreateRangeStmt: 'CREATE TYPE',
  CreateDomainStmt: 'CREATE DOMAIN',
  CreatePolicyStmt: 'CREATE POLICY',
  AlterPolicyStmt: 'ALTER POLICY',
  CreatePublicationStmt: 'CREATE PUBLICATION',
  AlterPublicationStmt: 'ALTER PUBLICATION',
  CreateSubscriptionStmt: 'CREATE SUBSCRIPTION',
  AlterSubscriptionStmt: 'ALTER SUBSCRIPTION',
  DropSubscriptionStmt: 'DROP SUBSCRIPTION',
  CreateTableSpaceStmt: 'CREATE TABLESPACE',
  DropTableSpaceStmt: 'DROP TABLESPACE',
  CreateForeignServerStmt: 'CREATE SERVER',
  CreateFdwStmt: 'CREATE FOREIGN DATA WRAPPER',
  CreateUserMappingStmt: 'CREATE USER MAPPING',
  CreateForeignTableStmt: 'CREATE FOREIGN TABLE',
  ImportForeignSchemaStmt: 'IMPORT FOREIGN SCHEMA',
  CreateEventTrigStmt: 'CREATE EVENT TRIGGER',
  CreateStatsStmt: 'CREATE STATISTICS',
  CreateCastStmt: 'CREATE CAST',
  CreateConversionStmt: 'CREATE CONVERSION',
  CreateTransformStmt: 'CREATE TRANSFORM',
  CreateAmStmt: 'CREATE ACCESS METHOD',
  CreateOpClassStmt: 'CREATE OPERATOR CLASS',
  CreateOpFamilyStmt: 'CREATE OPERATOR FAMILY',
  RuleStmt: 'CREATE RULE',
  TruncateStmt: 'TRUNCATE TABLE',
  CommentStmt: 'COMMENT',
  SecLabelStmt: 'SECURITY LABEL',
  ClusterStmt: 'CLUSTER',
  ReindexStmt: 'REINDEX',
  CheckPointStmt: 'CHECKPOINT',
  LoadStmt: 'LOAD',
  ListenStmt: 'LISTEN',
  UnlistenStmt: 'UNLISTEN',
  NotifyStmt: 'NOTIFY',
  LockStmt: 'LOCK TABLE',
  ConstraintsSetStmt: 'SET CONSTRAINTS',
  VariableShowStmt: 'SHOW',
  DeclareCursorStmt: 'DECLARE CURSOR',
  PrepareStmt: 'PREPARE',
  ExecuteStmt: 'EXECUTE',
  AlterDefaultPrivilegesStmt: 'ALTER DEFAULT PRIVILEGES',
  AlterSystemStmt: 'ALTER SYSTEM',
  AlterEnumStmt: 'ALTER TYPE',
  AlterDomainStmt: 'ALTER DOMAIN',
  ReassignOwnedStmt: 'REASSIGN OWNED',
  DropOwnedStmt: 'DROP OWNED',
  RefreshMatViewStmt: 'REFRESH MATERIALIZED VIEW',
  CreatePLangStmt: 'CREATE LANGUAGE',
  AlterUserMappingStmt: 'ALTER USER MAPPING',
  DropUserMappingStmt: 'DROP USER MAPPING',
  AlterForeignServerStmt: 'ALTER SERVER',
  AlterFdwStmt: 'ALTER FOREIGN DATA WRAPPER',
  AlterEventTrigStmt: 'ALTER EVENT TRIGGER',
  AlterTSDictionaryStmt: 'ALTER TEXT SEARCH DICTIONARY',
  AlterTSConfigurationStmt: 'ALTER TEXT SEARCH CONFIGURATION',
  AlterOpFamilyStmt: 'ALTER OPERATOR FAMILY',
  AlterOperatorStmt: 'ALTER OPERATOR',
  AlterTypeStmt: 'ALTER TYPE',
  AlterStatsStmt: 'ALTER STATISTICS',
  AlterCollationStmt: 'ALTER COLLATION',
  AlterExtensionContentsStmt: 'ALTER EXTENSION',
  AlterDatabaseRefreshCollStmt: 'ALTER DATABASE',
  AlterTableSpaceOptionsStmt: 'ALTER TABLESPACE',
}

/** OBJECT_* → the noun PostgreSQL uses in DROP/ALTER tags. */
const OBJECT_NOUN: Record<string, string> = Object.fromEntries(
  Object.entries(TAGGED_KIND_NOUNS).map(([kind, noun]) => [kind, noun.toUpperCase()]),
)

const TRANSACTION: Record<string, string> = {
  TRANS_STMT_BEGIN: 'BEGIN', TRANS_STMT_START: 'START TRANSACTION', TRANS_STMT_COMMIT: 'COMMIT',
  TRANS_STMT_ROLLBACK: 'ROLLBACK', TRANS_STMT_SAVEPOINT: 'SAVEPOINT', TRANS_STMT_RELEASE: 'RELEASE',
  TRANS_STMT_ROLLBACK_TO: 'ROLLBACK', TRANS_STMT_PREPARE: 'PREPARE TRANSACTION',
  TRANS_STMT_COMMIT_PREPARED: 'COMMIT PREPARED', TRANS_STMT_ROLLBACK_PREPARED: 'ROLLBACK PREPARED',
}

export function commandOf(stmt: Node): string {
  const type = Object.keys(stmt)[0]
  if (type === undefined) return 'UNKNOWN'
  const fixed = FIXED[type]
  if (fixed !== undefined) return fixed
  const body = (stmt[type] ?? {}) as Node
  switch (type) {
    case 'SelectStmt':
      return body.intoClause ? 'SELECT INTO' : 'SELECT'
    case 'RenameStmt':
      // Renaming a column or constraint is an ALTER of the relation that has it.
      return 'ALTER ' + (OBJECT_NOUN[body.renameType as string] ?? OBJECT_NOUN[body.relationType as string] ?? 'TABLE')
    case 'DropStmt':
      return 'DROP ' + (OBJECT_NOUN[body.removeType as string] ?? 'OBJECT')
    case 'AlterTableStmt':
      return 'ALTER ' + (OBJECT_NOUN[body.objtype as string] ?? 'TABLE')
    case 'GrantStmt':
      return body.is_grant ? 'GRANT' : 'REVOKE'
    case 'GrantRoleStmt':
      return body.is_grant ? 'GRANT ROLE' : 'REVOKE ROLE'
    case 'TransactionStmt':
      return TRANSACTION[body.kind as string] ?? 'TRANSACTION'
    case 'VariableSetStmt':
      return String(body.kind ?? '').startsWith('VAR_RESET') ? 'RESET' : 'SET'
    case 'DiscardStmt':
      return body.target === 'DISCARD_ALL' ? 'DISCARD ALL' : body.target === 'DISCARD_PLANS' ? 'DISCARD PLANS'
        : body.target === 'DISCARD_SEQUENCES' ? 'DISCARD SEQUENCES' : 'DISCARD TEMP'
    case 'DeallocateStmt':
      return body.name === undefined ? 'DEALLOCATE ALL' : 'DEALLOCATE'
    case 'FetchStmt':
      return body.ismove ? 'MOVE' : 'FETCH'
    case 'DefineStmt':
      return 'CREATE ' + (OBJECT_NOUN[body.kind as string] ?? 'OBJECT')
    case 'VacuumStmt':
      // ANALYZE is a VacuumStmt without is_vacuumcmd; PostgreSQL tags it ANALYZE.
      return body.is_vacuumcmd ? 'VACUUM' : 'ANALYZE'
    case 'CreateFunctionStmt':
      return body.is_procedure ? 'CREATE PROCEDURE' : 'CREATE FUNCTION'
    case 'AlterFunctionStmt':
      return 'ALTER ' + (OBJECT_NOUN[body.objtype as string] ?? 'FUNCTION')
    case 'ClosePortalStmt':
      return body.portalname === undefined ? 'CLOSE CURSOR ALL' : 'CLOSE CURSOR'
    case 'AlterOwnerStmt':
    case 'AlterObjectSchemaStmt': {
      const noun = OBJECT_NOUN[body.objectType as string]
      return noun === undefined ? 'ALTER' : 'ALTER ' + noun
    }
    case 'CreateTableAsStmt':
      return body.objtype === 'OBJECT_MATVIEW' ? 'CREATE MATERIALIZED VIEW' : 'CREATE TABLE AS'
    default:
      return 'UNKNOWN'
  }
}
