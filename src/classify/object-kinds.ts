/**
 * PostgreSQL's ObjectType values (the OBJECT_* of parse trees) and the noun
 * for each, in lower case: the object types classify/ records and, upper-cased,
 * the nouns command.ts puts in command tags (DROP TABLE, ALTER SERVER, …).
 */

/** Kinds whose noun command tags name (command.ts); also object types. */
const TAGGED = {
  OBJECT_TABLE: 'table', OBJECT_INDEX: 'index', OBJECT_SEQUENCE: 'sequence', OBJECT_VIEW: 'view',
  OBJECT_MATVIEW: 'materialized view', OBJECT_FOREIGN_TABLE: 'foreign table', OBJECT_TYPE: 'type',
  OBJECT_DOMAIN: 'domain', OBJECT_SCHEMA: 'schema', OBJECT_FUNCTION: 'function', OBJECT_PROCEDURE: 'procedure',
  OBJECT_ROUTINE: 'routine', OBJECT_AGGREGATE: 'aggregate', OBJECT_TRIGGER: 'trigger', OBJECT_EXTENSION: 'extension',
  OBJECT_POLICY: 'policy', OBJECT_RULE: 'rule', OBJECT_PUBLICATION: 'publication', OBJECT_COLLATION: 'collation',
  OBJECT_CONVERSION: 'conversion', OBJECT_OPERATOR: 'operator', OBJECT_EVENT_TRIGGER: 'event trigger',
  OBJECT_FOREIGN_SERVER: 'server', OBJECT_FDW: 'foreign data wrapper', OBJECT_STATISTIC_EXT: 'statistics',
  OBJECT_DATABASE: 'database', OBJECT_ROLE: 'role', OBJECT_TABLESPACE: 'tablespace', OBJECT_LANGUAGE: 'language',
  OBJECT_CAST: 'cast', OBJECT_ACCESS_METHOD: 'access method', OBJECT_TSCONFIGURATION: 'text search configuration',
  OBJECT_TSDICTIONARY: 'text search dictionary', OBJECT_TSPARSER: 'text search parser',
  OBJECT_TSTEMPLATE: 'text search template',
}

/**
 * Kinds that are object types only: command.ts does not name them in tags
 * (it keeps its per-statement fallback), and sub-objects (column, constraint,
 * …) map to what classify/ records for them.
 */
const UNTAGGED = {
  OBJECT_SUBSCRIPTION: 'subscription', OBJECT_OPCLASS: 'operator class', OBJECT_OPFAMILY: 'operator family',
  OBJECT_TRANSFORM: 'transform', OBJECT_LARGEOBJECT: 'large object', OBJECT_PARAMETER_ACL: 'setting',
  OBJECT_COLUMN: 'column', OBJECT_TABCONSTRAINT: 'constraint', OBJECT_DOMCONSTRAINT: 'constraint',
  OBJECT_ATTRIBUTE: 'attribute', OBJECT_DEFAULT: 'default', OBJECT_DEFACL: 'default privileges',
  OBJECT_AMOP: 'operator', OBJECT_AMPROC: 'function', OBJECT_PUBLICATION_NAMESPACE: 'schema',
  OBJECT_PUBLICATION_REL: 'relation', OBJECT_USER_MAPPING: 'user mapping',
}

/** OBJECT_* → object type noun (classify/). */
export const OBJECT_KIND_NOUNS: Readonly<Record<string, string>> = { ...TAGGED, ...UNTAGGED }

/** OBJECT_* → noun, for the kinds command tags name (command.ts upper-cases them). */
export const TAGGED_KIND_NOUNS: Readonly<Record<string, string>> = TAGGED
