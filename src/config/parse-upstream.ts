/** `upstream:` — the PostgreSQL server and the credentials the proxy uses there. */
import { fail, formatPath, type KeyPath } from './errors.js'
import { mapEach } from './problems.js'
import { given, type Mapping, type Reader } from './reader.js'
import type { UpstreamClientCert, UpstreamConfig, UpstreamPoolConfig, UpstreamRoleCredentials, UpstreamTlsMode } from './types.js'
import { isLoopbackHost } from './units.js'

const TLS_MODES = ['disable', 'require', 'verify-full'] as const

export function parseUpstream(r: Reader, v: unknown): UpstreamConfig {
  const path = ['upstream']
  const m = v === null || v === undefined ? {} : r.mapping(v, path, ['host', 'port', 'tls', 'roles', 'connect_timeout', 'pool'])

  const host = given(m, 'host') ? r.string(m.host, [...path, 'host']) : '127.0.0.1'
  const port = r.int(m.port, [...path, 'port'], 5432, 1, 65535)

  // TLS to the upstream defaults to `disable` when the server is on this
  // machine (127.0.0.0/8, ::1, localhost, a unix socket directory) and to
  // `require` otherwise, so credentials never cross a network in clear text
  // unless the operator says so explicitly.
  const tlsPath = [...path, 'tls']
  const t = given(m, 'tls') ? r.mapping(m.tls, tlsPath, ['mode', 'ca', 'servername']) : {}
  const defaultMode: UpstreamTlsMode = isLoopbackHost(host) ? 'disable' : 'require'
  const mode = r.oneOf(t.mode, [...tlsPath, 'mode'], TLS_MODES, defaultMode)
  let ca: string | null = null
  if (given(t, 'ca')) {
    ca = r.readPem(r.path(t.ca, [...tlsPath, 'ca']), [...tlsPath, 'ca'], 'CERTIFICATE')
  } else if (mode === 'verify-full') {
    fail([...tlsPath, 'ca'], 'is required with mode verify-full (a PEM bundle of the CA certificates to trust)')
  }
  const servername = r.optString(t.servername, [...tlsPath, 'servername'])

  const roles: Record<string, UpstreamRoleCredentials> = Object.create(null) as Record<string, UpstreamRoleCredentials>
  if (given(m, 'roles')) {
    // Each role's credentials are checked, whatever the others' problems.
    mapEach(r.entries(m.roles, [...path, 'roles']), ([role, spec]) => {
      const rolePath = [...path, 'roles', role]
      if (role === '') fail(rolePath, 'a role name must not be empty')
      // `ROLE:` or `ROLE: {}` => no credential (the upstream trusts the proxy);
      // `{ password }` => SCRAM / md5 / cleartext; `{ cert, key }` => the proxy
      // presents this client certificate over TLS (PostgreSQL `cert` auth).
      const rm = spec === null || spec === undefined ? {} : r.mapping(spec, rolePath, ['password', 'cert', 'key'])
      const password = given(rm, 'password') ? r.string(rm.password, [...rolePath, 'password'], false) : null
      const clientCert = parseRoleCert(r, rm, rolePath, password !== null)
      roles[role] = clientCert ? { password, clientCert } : { password }
      return role
    })
  }

  // A client certificate is only ever presented inside TLS.
  if (mode === 'disable') {
    const withCert = Object.keys(roles).find((role) => roles[role]!.clientCert)
    if (withCert !== undefined) {
      fail(
        [...tlsPath, 'mode'],
        `must be require or verify-full: ${formatPath([...path, 'roles', withCert, 'cert'])} is a client certificate, ` +
          `which is only presented over TLS (the mode is disable${given(t, 'mode') ? '' : ', the default for a loopback host'})`,
      )
    }
  }

  const connectTimeoutMs = r.duration(m.connect_timeout, [...path, 'connect_timeout'], 5000, 1, 600_000)

  const out: UpstreamConfig = { host, port, tls: { mode, ca, servername }, roles, connectTimeoutMs }
  if (given(m, 'pool')) out.pool = parsePool(r, m.pool, [...path, 'pool'])
  return out
}

/** `upstream.pool` (see UpstreamPoolConfig); every key optional, `enabled` defaults to false. */
function parsePool(r: Reader, v: unknown, path: KeyPath): UpstreamPoolConfig {
  const m = v === null ? {} : r.mapping(v, path, ['enabled', 'max_idle_per_key', 'idle_timeout', 'max_lifetime'])
  const enabled = r.bool(m.enabled, [...path, 'enabled'], false)
  const maxIdlePerKey = r.int(m.max_idle_per_key, [...path, 'max_idle_per_key'], 16, 1, 10_000)
  const idleTimeoutMs = r.duration(m.idle_timeout, [...path, 'idle_timeout'], 60_000, 1000, 86_400_000)
  const maxLifetimeMs = r.duration(m.max_lifetime, [...path, 'max_lifetime'], 30 * 60_000, 1000, 7 * 86_400_000)
  if (idleTimeoutMs > maxLifetimeMs) {
    fail([...path, 'idle_timeout'], `must not be longer than ${formatPath([...path, 'max_lifetime'])} (a connection is closed at its max_lifetime anyway)`)
  }
  return { enabled, maxIdlePerKey, idleTimeoutMs, maxLifetimeMs }
}

/** `cert` + `key` of one upstream role (both or neither; not with a password). */
function parseRoleCert(r: Reader, rm: Mapping, rolePath: KeyPath, hasPassword: boolean): UpstreamClientCert | undefined {
  const hasCert = given(rm, 'cert')
  const hasKey = given(rm, 'key')
  if (!hasCert && !hasKey) return undefined
  if (!hasKey) fail([...rolePath, 'key'], 'is required with cert (the PEM private key of the client certificate)')
  if (!hasCert) fail([...rolePath, 'cert'], 'is required with key (the PEM client certificate, whose CN PostgreSQL maps to the role)')
  if (hasPassword) {
    fail([...rolePath, 'password'], 'cannot be combined with cert and key: a role uses either a password or a client certificate')
  }
  const certPath = r.path(rm.cert, [...rolePath, 'cert'])
  const cert = r.readPem(certPath, [...rolePath, 'cert'], 'CERTIFICATE')
  const keyPath = r.path(rm.key, [...rolePath, 'key'])
  const key = r.readPem(keyPath, [...rolePath, 'key'], 'PRIVATE KEY')
  return { cert, key, certPath, keyPath }
}
