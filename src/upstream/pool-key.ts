/**
 * What lets two governed sessions share one upstream connection (part of
 * `upstream.pool`, see ./pool.ts).
 *
 * The pool key: a connection is only handed to a session mapped to the same
 * role, database, startup parameters (all but application_name and
 * pgwitness.session_id) and upstream (host, port, TLS settings and the
 * role's credentials: a reload that changes any of these changes the key).
 *
 * Governed settings: a pooled connection is opened with neutral startup
 * values (`application_name=pgw:pooled`, `pgwitness.session_id=''`), and each
 * session that gets it sets its own with one `set_config` round trip before
 * the client is told it is logged in. Startup values are what `RESET ALL` /
 * `DISCARD ALL` restore, so a client resetting on a reused connection gets
 * the neutral values — never another session's id.
 */
import { createHash } from 'node:crypto'
import type { UpstreamConfig } from '../config/types.js'
import type { UpstreamLogin } from './connect.js'

/** Startup values of the governed settings on a pooled connection (what RESET ALL restores). */
export const POOLED_APPLICATION_NAME = 'pgw:pooled'
export const POOLED_SESSION_ID = ''

/**
 * What a pooled connection was made with besides role and database: the
 * upstream address, TLS settings and the role's credentials. Hashed, so no
 * secret is kept in the key; cached per config object (a reload makes a new one).
 */
const fingerprints = new WeakMap<UpstreamConfig, Map<string, string>>()

export function credentialFingerprint(cfg: UpstreamConfig, role: string): string {
  let byRole = fingerprints.get(cfg)
  if (!byRole) fingerprints.set(cfg, (byRole = new Map()))
  let fp = byRole.get(role)
  if (fp === undefined) {
    const creds = Object.prototype.hasOwnProperty.call(cfg.roles, role) ? cfg.roles[role]! : null
    fp = createHash('sha256')
      .update(JSON.stringify([
        cfg.host, cfg.port, cfg.tls.mode, cfg.tls.ca, cfg.tls.servername, role,
        creds?.password ?? null, creds?.clientCert?.cert ?? null, creds?.clientCert?.key ?? null,
      ]))
      .digest('base64url')
    byRole.set(role, fp)
  }
  return fp
}

/**
 * The pool key: role, database, the startup parameters the connection was
 * opened with (all but the governed ones, which each session sets), and the
 * credential fingerprint. A client whose client_encoding, DateStyle,
 * TimeZone, options, … differ gets a connection opened with its own.
 */
export function poolKey(login: UpstreamLogin, fingerprint: string): string {
  const params = Object.entries(login.parameters)
    .filter(([k]) => k !== 'application_name' && k !== 'pgwitness.session_id')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
  return JSON.stringify([login.role, login.database, params, fingerprint])
}

/**
 * The governed settings for one session, as literals that mean the same
 * under any standard_conforming_strings (E'' strings), with schema-qualified
 * calls (the previous client may have set search_path: DISCARD ALL resets
 * it, but do not depend on that).
 */
export function setupQuery(applicationName: string, sessionId: string): string {
  const lit = (s: string): string => `E'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
  return (
    `SELECT pg_catalog.set_config('application_name', ${lit(applicationName)}, false), ` +
    `pg_catalog.set_config('pgwitness.session_id', ${lit(sessionId)}, false)`
  )
}
