/**
 * A pgbench-shaped governed session's context (what every record of the
 * session shares), for the in-process cost benchmarks (record-cost.ts,
 * relay-cost.ts): the same identity, connection and upstream members a
 * real session's records carry, so the measured lines have their real size.
 */
import { deepFreeze } from '../../src/ledger/canonical-json.js'
import type { SessionContext } from '../../src/evidence/records.js'

export const benchSessionContext: SessionContext = deepFreeze({
  proxy: { instance: 'pgw-bench', version: '0.1.0' },
  connection: { id: '01936a4e-7d2c-7abc-8def-0123456789ab', client: { address: '127.0.0.1', port: 53122 }, tls: { version: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', client_cert_sha256: null } },
  session: { id: '01936a4e-7d2c-7abc-8def-0123456789ac', started_at: '2026-11-26T05:38:42.123456Z', application_name: 'pgbench' },
  identity: { method: 'jwt', subject: 'spiffe://test.local/ns/billing/sa/api', issuer: 'https://issuer.test', audience: ['pgwitness'], token_id: 'abc', token_expires_at: '2026-11-26T06:38:42.000000Z', spiffe_id: null, cert_sha256: null, claims: { team: 'payments' }, policy_rule: 'bench' },
  upstream: { host: '127.0.0.1', port: 5432, database: 'appdb', role: 'app', backend_pid: 4711, server_session_id: '6745a1b2.1267' },
}) as SessionContext
