/**
 * Approvals with certificate-only identities: an approval bound to the
 * certificate's SPIFFE ID admits a require_approval rule on the certificate
 * alone (psql with PGSSLCERT and PGOPTIONS, no password prompt); one bound to
 * another subject does not.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import os from 'node:os'
import path from 'node:path'
import { rmSync } from 'node:fs'
import { DEV_APPROVALS_ISSUER, mintDevApproval } from '../../src/dev/approvals.js'
import { createDevIssuerKeys, DEV_AUDIENCE } from '../../src/dev/tokens.js'
import { readValidAuditLog, recordsOfType, waitForRecords } from '../helpers/audit.js'
import { startFixture } from '../helpers/proxy.js'

const SPIFFE = 'spiffe://dev.pgwitness.local/ns/default/sa/dev-client'
const dir = path.join(os.tmpdir(), `pgw-approvals-mtls-${process.pid}`)
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const keys = await createDevIssuerKeys(dir)
const f = await startFixture({
  tlsYaml: 'tls:\n  cert: {cert}\n  key: {key}\n  client_ca: {ca}',
  identityYaml: `  approvals:\n    - { issuer: ${DEV_APPROVALS_ISSUER}, audience: ${DEV_AUDIENCE}, jwks_file: ${keys.jwksPath} }`,
  policyYaml: `policy:
  - name: cert-elevated
    match: { method: mtls, subject: "spiffe://dev.pgwitness.local/ns/default/*" }
    roles: [postgres]
    databases: [appdb]
    require_approval: true`,
})
t.teardown(() => f.stop())

function psql(approval: string, app: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('psql', ['-w', '-X', '-At', '-c', 'select current_user'], {
      env: {
        ...f.libpqEnv('', { user: 'postgres' }), PGPASSWORD: '', PGAPPNAME: app, PGOPTIONS: `-c pgwitness.approval=${approval}`,
        PGSSLCERT: f.pki.clientCert, PGSSLKEY: f.pki.clientKey, PGSSLROOTCERT: f.pki.caCert, PGSSLMODE: 'verify-ca',
      },
    }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })
}
const mint = (subject: string) => mintDevApproval(keys.privateJwk, { subject, ticket: 'CHG-77', approver: 'erin', roles: ['postgres'], databases: ['appdb'] })

t.test('an approval bound to the certificate subject admits on the certificate alone', async (t) => {
  const r = await psql(await mint(SPIFFE), 'mtls-approved')
  t.equal(r.code, 0, r.stderr)
  t.equal(r.stdout.trim(), 'postgres')
  const recs = await waitForRecords(f.auditPath, (rs) => recordsOfType(rs, 'session.end').some((e) => e.session.application_name === 'mtls-approved'))
  const start = recordsOfType(recs, 'session.start').find((s) => s.session.application_name === 'mtls-approved')!
  t.match(start, { identity: { method: 'mtls', subject: SPIFFE, policy_rule: 'cert-elevated' }, approval: { ticket: 'CHG-77', approver: 'erin' } })
})

t.test('an approval bound to another subject: the certificate alone is not enough', async (t) => {
  const r = await psql(await mint('spiffe://dev.pgwitness.local/ns/default/sa/someone-else'), 'mtls-other')
  t.not(r.code, 0, 'refused (psql -w does not prompt for the token it is asked for)')
  t.notOk(recordsOfType(readValidAuditLog(f.auditPath), 'session.start').some((s) => s.session.application_name === 'mtls-other'), 'no session')
})
