import { HandshakeError } from './handshake-error.js'

/** Startup keys the client may not pass through: they are the proxy's to set. */
const RESERVED = new Set(['user', 'database', 'replication', 'application_name'])

/** Longest application_name PostgreSQL keeps (NAMEDATALEN - 1). */
const MAX_APPLICATION_NAME = 63

/**
 * The StartupMessage parameters sent upstream for a governed session: the
 * client's own settings (client_encoding, DateStyle, TimeZone, options, …),
 * plus the governed session id as the GUC `pgwitness.session_id` and tagged
 * into application_name, so server logs and pg_stat_activity show it.
 * A client can never set `pgwitness.*` itself, neither directly nor via
 * `options=-c pgwitness.…`.
 */
export function startupParametersFor(client: ReadonlyMap<string, string>, sessionId: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of client) {
    if (RESERVED.has(k) || k.startsWith('_pq_.')) continue
    // PostgreSQL strips backslash escapes from options before applying them: check what it will see.
    if (k.toLowerCase().startsWith('pgwitness.') || (k === 'options' && /pgwitness\./i.test(v.replace(/\\/g, '')))) {
      throw new HandshakeError('startup_rejected', {
        code: '42501',
        message: 'pgwitness.* settings are reserved for the proxy and cannot be set by a client',
      })
    }
    out[k] = v
  }
  out.application_name = taggedApplicationName(client.get('application_name') ?? '', sessionId)
  out['pgwitness.session_id'] = sessionId
  return out
}

/** "<client's name> pgw:<session id>", cutting the client's part so the tag always survives PostgreSQL's 63-byte limit. */
export function taggedApplicationName(appName: string, sessionId: string): string {
  const tag = `pgw:${sessionId}`
  const room = MAX_APPLICATION_NAME - tag.length - 1
  // Printable ASCII only: PostgreSQL 16+ escapes other bytes as \xHH, which would push the tag out.
  let name = appName.replace(/[^\x20-\x7e]/g, '?')
  if (name.length > room) name = name.slice(0, room)
  return name ? `${name} ${tag}` : tag
}
