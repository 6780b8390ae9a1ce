/**
 * The session's prepared statements and portals as the SERVER has them.
 *
 * They change only when the server confirms a change — ParseComplete,
 * BindComplete, CloseComplete, a simple Query (which destroys the unnamed
 * statement and portal), the end of a transaction (which destroys portals),
 * DEALLOCATE / DISCARD — so a Parse the server refused (42P05: the name
 * exists) changes nothing, and an Execute runs the statement the server
 * really has under that name.
 *
 * A second, predicted view serves only what must be known before the server
 * answers (strict durability's intents): the accepted state with the
 * messages sent since applied as PostgreSQL would apply them if none fails.
 */
import type { StatementInfo } from '../evidence/types.js'
import { unparsedStatement } from '../classify/split.js'
import type { Portal, Prepared } from './tracked-statement.js'

// The maps are made on first use: most sessions are idle most of the time,
// and an empty Map costs ~200 bytes (limits.max_connections × 4 of them).
const NONE: ReadonlyMap<string, never> = new Map<string, never>()

/**
 * Named entries in a Map (made on first use), the unnamed one ('') in a
 * field: drivers run most statements through the unnamed portal, which every
 * transaction's end destroys, and Map.clear() allocates a new table each time.
 */
class ByName<T> {
  private unnamed: T | undefined = undefined
  private named: Map<string, T> | null = null

  get(name: string): T | undefined {
    return name === '' ? this.unnamed : (this.named ?? NONE).get(name)
  }

  set(name: string, v: T): void {
    if (name === '') this.unnamed = v
    else (this.named ??= new Map()).set(name, v)
  }

  delete(name: string): void {
    if (name === '') this.unnamed = undefined
    else this.named?.delete(name)
  }

  clear(): void {
    this.unnamed = undefined
    if (this.named !== null && this.named.size > 0) this.named.clear()
  }
}

export class ProtocolState {
  private readonly statements = new ByName<Prepared>()
  private readonly portals = new ByName<Portal>()
  /** Predicted changes of messages sent but not yet answered (null entry: closed). */
  private readonly sentStatements = new ByName<Prepared | null>()
  private readonly sentPortals = new ByName<PredictedPortal | null>()

  // ---- server-confirmed changes -------------------------------------------

  parsed(stmt: Prepared): void {
    this.statements.set(stmt.name, stmt)
  }

  /** BindComplete: the portal now runs the statement the server had under that name. */
  bound(portalName: string, statementName: string, parameters: StatementInfo['parameters']): void {
    const stmt = this.statements.get(statementName)
    // A statement prepared with SQL PREPARE is unknown to us: the portal runs something we did not see.
    this.portals.set(portalName, { name: portalName, stmt: stmt ?? unseenStatement(statementName), parameters, executions: 0, rows: 0 })
  }

  closed(target: 'S' | 'P', name: string): void {
    if (target === 'P') {
      this.portals.delete(name)
      return
    }
    // Portals made from it live on: they hold the plan (PostgreSQL runs them, whatever the protocol docs say).
    this.statements.delete(name)
  }

  /** A simple Query ran: it destroys the unnamed statement and the unnamed portal. */
  queryRan(): void {
    this.closed('S', '')
    this.portals.delete('')
  }

  /** The transaction ended (ReadyForQuery 'I'): portals do not outlive it. */
  transactionEnded(): void {
    this.portals.clear()
  }

  /** DEALLOCATE name | DEALLOCATE ALL (null); DISCARD ALL also closes every portal. */
  deallocated(name: string | null, portalsToo = false): void {
    if (name !== null) this.statements.delete(name)
    else this.statements.clear()
    if (portalsToo) this.portals.clear()
  }

  /** SQL CLOSE name | CLOSE ALL (null). */
  closedByName(name: string | null): void {
    if (name === null) this.portals.clear()
    else this.portals.delete(name)
  }

  portal(name: string): Portal | undefined {
    return this.portals.get(name)
  }

  statement(name: string): Prepared | undefined {
    return this.statements.get(name)
  }

  // ---- predicted view (sent, not yet answered) ----------------------------

  /** A Parse sent: PostgreSQL refuses a named statement that exists, replaces the unnamed one. */
  sentParse(stmt: Prepared): void {
    if (stmt.name !== '' && this.predictedStatement(stmt.name) !== undefined) return
    this.sentStatements.set(stmt.name, stmt)
  }

  sentBind(portalName: string, statementName: string, parameters: StatementInfo['parameters']): void {
    const stmt = this.predictedStatement(statementName)
    this.sentPortals.set(portalName, stmt ? { stmt, parameters } : null)
  }

  sentClose(target: 'S' | 'P', name: string): void {
    if (target === 'S') this.sentStatements.set(name, null)
    else this.sentPortals.set(name, null)
  }

  /** What an Execute of this portal is expected to run, if anything. */
  predictedPortal(portalName: string): PredictedPortal | undefined {
    const sent = this.sentPortals.get(portalName)
    if (sent !== undefined) return sent ?? undefined
    return this.portals.get(portalName)
  }

  /** Nothing is in flight: every sent change has been confirmed or refused. */
  settled(): void {
    this.sentStatements.clear()
    this.sentPortals.clear()
  }

  private predictedStatement(name: string): Prepared | undefined {
    const sent = this.sentStatements.get(name)
    if (sent !== undefined) return sent ?? undefined
    return this.statements.get(name)
  }
}

interface PredictedPortal {
  stmt: Prepared
  parameters: StatementInfo['parameters']
}

/** A statement the server has that no Parse of this session created (SQL PREPARE). */
export function unseenStatement(name: string): Prepared {
  return { name, text: '', truncated: false, split: unparsedStatement(''), denial: null }
}
