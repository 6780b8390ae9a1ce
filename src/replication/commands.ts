/**
 * Replication connections, as PostgreSQL reads them (pure): the startup
 * packet's `replication` parameter, and which Query texts the walsender runs
 * as replication commands (its own grammar, which libpg-query does not parse).
 */
import type { ReplicationMode } from '../config/types.js'
import type { SplitStatement } from '../classify/split.js'
import { HandshakeError } from '../session/handshake-error.js'

/**
 * The first keywords of the replication grammar (PostgreSQL 15's
 * replication_scanner_is_replication_command): a Query starting with one is a
 * replication command; anything else is SQL (run on replication=database,
 * refused by the server on replication=true).
 */
export const REPLICATION_COMMANDS: ReadonlySet<string> = new Set([
  'IDENTIFY_SYSTEM', 'BASE_BACKUP', 'START_REPLICATION', 'CREATE_REPLICATION_SLOT',
  'DROP_REPLICATION_SLOT', 'READ_REPLICATION_SLOT', 'TIMELINE_HISTORY', 'SHOW',
])

/**
 * The `replication` startup parameter: `database` asks for a logical
 * walsender, a true boolean for a physical one, a false one for an ordinary
 * session (null). Anything else PostgreSQL refuses (FATAL 22023); so does the proxy.
 */
export function replicationModeOf(value: string | undefined): ReplicationMode | null {
  if (value === undefined) return null
  if (value === 'database') return 'logical'
  const b = parseBool(value)
  if (b === null) {
    throw new HandshakeError('startup_rejected', {
      code: '22023',
      message: `invalid value for parameter "replication": "${value}"`,
      hint: 'Valid values are: "false", 0, "true", 1, "database".',
    })
  }
  return b ? 'physical' : null
}

/** The value sent upstream for a mode (what libpq itself sends). */
export function replicationParameter(mode: ReplicationMode): string {
  return mode === 'logical' ? 'database' : 'true'
}

/** The replication command a Query text is (its keyword), or null for SQL. */
export function replicationCommandOf(text: string): string | null {
  // The replication scanner skips whitespace and reads its first token; its keywords are upper case
  // only (`identify_system` or `Show x` on a replication=database connection is SQL), and a longer
  // identifier (`SHOWX`) is not one. Comments are not skipped: `/* */ IDENTIFY_SYSTEM` is SQL.
  const m = /^[ \t\n\r\f\v]*([A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*)/.exec(text)
  const word = m?.[1]
  return word !== undefined && REPLICATION_COMMANDS.has(word) ? word : null
}

/** How a replication command is recorded: class REPLICATION, the command keyword, no objects. */
export function replicationStatement(text: string, command: string): SplitStatement {
  return { text, command, node: null, classes: ['REPLICATION'], objects: [], governedSetting: false }
}

/** PostgreSQL's parse_bool: true/false, yes/no, on/off, 1/0 and unambiguous prefixes, any case. */
function parseBool(value: string): boolean | null {
  const v = value.toLowerCase()
  if (v.length === 0) return null
  if ('true'.startsWith(v) || ('yes'.startsWith(v)) || v === 'on' || v === '1') return true
  if ('false'.startsWith(v) || 'no'.startsWith(v) || v === 'off' || v === 'of' || v === '0') return false
  return null
}
