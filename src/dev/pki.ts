/**
 * Development PKI: a throwaway CA, a server certificate and a client
 * certificate carrying a SPIFFE ID, generated with the `openssl` CLI
 * (execFile, never a shell). Keys are EC P-256 (PKCS#8 PEM, mode 0600).
 *
 * For development and tests only: the CA key sits next to the certificates.
 */
import { execFile } from 'node:child_process'
import { randomBytes, X509Certificate, createPrivateKey } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'

export interface DevPki {
  dir: string
  caCert: string
  caKey: string
  serverCert: string
  serverKey: string
  clientCert: string
  clientKey: string
}

export interface DevPkiOptions {
  /** DNS SANs of the server certificate, default ['localhost']; IP SANs 127.0.0.1 and ::1 are always added */
  serverNames?: string[]
  /** URI SAN of the client certificate, default 'spiffe://dev.pgwitness.local/ns/default/sa/dev-client' */
  clientSpiffeId?: string
  /** CN of the client certificate, default 'dev-client' */
  clientCn?: string
  /** validity in days, default 825 */
  days?: number
}

export interface IssueCertOptions {
  /** URI SAN; omitted means the certificate has no URI SAN */
  spiffeId?: string
  /** subject CN, default: the name */
  cn?: string
  /**
   * Validity in days from now, default 825. Zero or negative issues an
   * already expired certificate: notAfter = now + days days - 1 minute,
   * notBefore = notAfter - 30 days.
   */
  days?: number
  /** explicit validity window (overrides days), e.g. a not-yet-valid certificate */
  notBefore?: Date
  notAfter?: Date
  /** extended key usage, default 'clientAuth' */
  eku?: 'clientAuth' | 'serverAuth'
  /** extra DNS SANs */
  dnsNames?: string[]
}

export const DEFAULT_CLIENT_SPIFFE_ID = 'spiffe://dev.pgwitness.local/ns/default/sa/dev-client'
const DEFAULT_DAYS = 825
const CA_CN = 'pgwitness dev CA'

const FILES = {
  caCert: 'ca.crt',
  caKey: 'ca.key',
  serverCert: 'server.crt',
  serverKey: 'server.key',
  clientCert: 'client.crt',
  clientKey: 'client.key',
} as const

function pkiPaths(dir: string): DevPki {
  const abs = path.resolve(dir)
  return {
    dir: abs,
    caCert: path.join(abs, FILES.caCert),
    caKey: path.join(abs, FILES.caKey),
    serverCert: path.join(abs, FILES.serverCert),
    serverKey: path.join(abs, FILES.serverKey),
    clientCert: path.join(abs, FILES.clientCert),
    clientKey: path.join(abs, FILES.clientKey),
  }
}

function openssl(args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'openssl',
      args,
      { cwd, env: { ...process.env, OPENSSL_CONF: '/dev/null' }, maxBuffer: 4 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as NodeJS.ErrnoException
          const hint = e.code === 'ENOENT' ? ' (is the openssl CLI installed?)' : ''
          reject(new Error(`openssl ${args[0] ?? ''} failed${hint}: ${String(stderr).trim() || e.message}`))
        } else resolve(String(stdout))
      },
    )
  })
}

function randomSerial(): string {
  const b = randomBytes(16)
  b[0] = (b[0] ?? 0) & 0x7f // positive
  b[0] = b[0] | 0x01 // non-zero leading byte
  return '0x' + b.toString('hex')
}

/** openssl config value: ASCII printable, no quotes/backslashes/commas that break the parser */
function assertConfSafe(what: string, v: string): void {
  if (!/^[\x21-\x7e]+$/.test(v) || /[",\\#$]/.test(v)) throw new Error(`${what} contains unsupported characters: ${JSON.stringify(v)}`)
}

function assertSubjectSafe(what: string, v: string): void {
  // used inside -subj "/CN=..."; '/' and '\' and '+' / '=' would change the DN structure
  if (!/^[\x20-\x7e]+$/.test(v) || /[/\\+=]/.test(v)) throw new Error(`${what} contains unsupported characters: ${JSON.stringify(v)}`)
}

interface LeafSpec {
  cn: string
  eku: 'clientAuth' | 'serverAuth'
  dns: string[]
  ips: string[]
  uris: string[]
  days: number
  notBefore?: Date | undefined
  notAfter?: Date | undefined
}

function extSection(spec: LeafSpec): string {
  const san = [
    ...spec.dns.map((d) => `DNS:${d}`),
    ...spec.ips.map((ip) => `IP:${ip}`),
    ...spec.uris.map((u) => `URI:${u}`),
  ]
  return [
    '[leaf_ext]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature, keyAgreement',
    `extendedKeyUsage = ${spec.eku}`,
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid:always',
    ...(san.length ? [`subjectAltName = ${san.join(', ')}`] : []),
    '',
  ].join('\n')
}

async function genKey(file: string, cwd: string): Promise<void> {
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file], cwd)
  await chmod(file, 0o600)
}

function asn1Time(d: Date): string {
  // GeneralizedTime YYYYMMDDHHMMSSZ (openssl converts to UTCTime where required)
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z')
}

/** Sign a leaf certificate for keyFile with the CA; writes certFile. */
async function signLeaf(
  ca: { cert: string; key: string },
  keyFile: string,
  certFile: string,
  spec: LeafSpec,
  work: string,
): Promise<void> {
  assertSubjectSafe('CN', spec.cn)
  for (const d of spec.dns) assertConfSafe('DNS name', d)
  for (const u of spec.uris) assertConfSafe('URI', u)
  const tag = randomBytes(6).toString('hex')
  const reqConf = path.join(work, `req-${tag}.cnf`)
  const extConf = path.join(work, `ext-${tag}.cnf`)
  const csr = path.join(work, `leaf-${tag}.csr`)
  await writeFile(reqConf, '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\n')
  await writeFile(extConf, extSection(spec))
  await openssl(['req', '-new', '-config', reqConf, '-key', keyFile, '-subj', `/CN=${spec.cn}`, '-out', csr], work)

  let notBefore = spec.notBefore
  let notAfter = spec.notAfter
  if (!notBefore && !notAfter && spec.days <= 0) {
    notAfter = new Date(Date.now() + spec.days * 86_400_000 - 60_000)
    notBefore = new Date(notAfter.getTime() - 30 * 86_400_000)
  }
  if (notBefore || notAfter) {
    // `openssl x509` (3.0) cannot set explicit dates; use a minimal `openssl ca`.
    const nb = notBefore ?? new Date(Date.now() - 60_000)
    const na = notAfter ?? new Date(nb.getTime() + (spec.days > 0 ? spec.days : DEFAULT_DAYS) * 86_400_000)
    const caDir = path.join(work, `ca-${tag}`)
    await mkdir(caDir)
    await writeFile(path.join(caDir, 'index.txt'), '')
    await writeFile(path.join(caDir, 'serial'), randomSerial().slice(2) + '\n')
    const caConf = path.join(work, `ca-${tag}.cnf`)
    await writeFile(
      caConf,
      [
        '[ca]',
        'default_ca = dev_ca',
        '[dev_ca]',
        `dir = ${caDir}`,
        'database = $dir/index.txt',
        'new_certs_dir = $dir',
        'serial = $dir/serial',
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'email_in_dn = no',
        'copy_extensions = none',
        '[policy_any]',
        'commonName = supplied',
        '',
        extSection(spec),
      ].join('\n'),
    )
    await openssl(
      [
        'ca', '-batch', '-notext',
        '-config', caConf,
        '-cert', ca.cert,
        '-keyfile', ca.key,
        '-in', csr,
        '-out', certFile,
        '-startdate', asn1Time(nb),
        '-enddate', asn1Time(na),
        '-extensions', 'leaf_ext',
      ],
      work,
    )
  } else {
    await openssl(
      [
        'x509', '-req',
        '-in', csr,
        '-CA', ca.cert,
        '-CAkey', ca.key,
        '-set_serial', randomSerial(),
        '-days', String(spec.days),
        '-sha256',
        '-extfile', extConf,
        '-extensions', 'leaf_ext',
        '-out', certFile,
      ],
      work,
    )
  }
  await chmod(certFile, 0o644)
}

async function createCa(certFile: string, keyFile: string, days: number, work: string): Promise<void> {
  await genKey(keyFile, work)
  const conf = path.join(work, 'ca.cnf')
  await writeFile(
    conf,
    [
      '[req]',
      'distinguished_name = dn',
      'prompt = no',
      'x509_extensions = ca_ext',
      '[dn]',
      '[ca_ext]',
      'basicConstraints = critical, CA:TRUE, pathlen:0',
      'keyUsage = critical, keyCertSign, cRLSign, digitalSignature',
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid:always',
      '',
    ].join('\n'),
  )
  await openssl(
    [
      'req', '-x509', '-new',
      '-config', conf,
      '-key', keyFile,
      '-subj', `/CN=${CA_CN}`,
      '-days', String(days),
      '-sha256',
      '-set_serial', randomSerial(),
      '-out', certFile,
    ],
    work,
  )
  await chmod(certFile, 0o644)
}

function resolveOpts(opts: DevPkiOptions = {}): Required<DevPkiOptions> {
  const days = opts.days ?? DEFAULT_DAYS
  if (!Number.isInteger(days) || days <= 0) throw new Error(`days must be a positive integer, got ${days}`)
  return {
    serverNames: opts.serverNames ?? ['localhost'],
    clientSpiffeId: opts.clientSpiffeId ?? DEFAULT_CLIENT_SPIFFE_ID,
    clientCn: opts.clientCn ?? 'dev-client',
    days,
  }
}

/** Always (re)create, overwriting. */
export async function createDevPki(dir: string, opts?: DevPkiOptions): Promise<DevPki> {
  const o = resolveOpts(opts)
  const pki = pkiPaths(dir)
  await mkdir(pki.dir, { recursive: true, mode: 0o700 })
  // Generate everything in a scratch dir, then rename into place, so a
  // half-finished run never leaves a mismatched set of files behind.
  const work = await mkdtemp(path.join(pki.dir, '.pki-tmp-'))
  try {
    const w = pkiPaths(work)
    await createCa(w.caCert, w.caKey, o.days, work)
    const ca = { cert: w.caCert, key: w.caKey }
    await genKey(w.serverKey, work)
    await signLeaf(
      ca,
      w.serverKey,
      w.serverCert,
      { cn: o.serverNames[0] ?? 'localhost', eku: 'serverAuth', dns: o.serverNames, ips: ['127.0.0.1', '::1'], uris: [], days: o.days },
      work,
    )
    await genKey(w.clientKey, work)
    await signLeaf(
      ca,
      w.clientKey,
      w.clientCert,
      { cn: o.clientCn, eku: 'clientAuth', dns: [], ips: [], uris: [o.clientSpiffeId], days: o.days },
      work,
    )
    for (const k of Object.keys(FILES) as (keyof typeof FILES)[]) {
      await rename(w[k], pki[k])
    }
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  return pki
}

/** true if the PKI in dir is complete, consistent, not about to expire and matches opts */
function pkiIsValid(pki: DevPki, o: Required<DevPkiOptions>): boolean {
  try {
    for (const k of Object.keys(FILES) as (keyof typeof FILES)[]) if (!existsSync(pki[k])) return false
    const soon = Date.now() + 86_400_000
    const ca = new X509Certificate(readFileSync(pki.caCert))
    const server = new X509Certificate(readFileSync(pki.serverCert))
    const client = new X509Certificate(readFileSync(pki.clientCert))
    if (!ca.ca) return false
    for (const c of [ca, server, client]) {
      if (Date.parse(c.validTo) < soon || Date.parse(c.validFrom) > Date.now()) return false
    }
    if (!ca.checkPrivateKey(createPrivateKey(readFileSync(pki.caKey)))) return false
    if (!server.checkPrivateKey(createPrivateKey(readFileSync(pki.serverKey)))) return false
    if (!client.checkPrivateKey(createPrivateKey(readFileSync(pki.clientKey)))) return false
    for (const leaf of [server, client]) {
      if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) return false
    }
    const sSan = server.subjectAltName ?? ''
    for (const n of o.serverNames) if (!sSan.split(', ').includes(`DNS:${n}`)) return false
    if (!sSan.includes('IP Address:127.0.0.1')) return false
    if (!(client.subjectAltName ?? '').split(', ').includes(`URI:${o.clientSpiffeId}`)) return false
    if (!client.subject.split('\n').includes(`CN=${o.clientCn}`)) return false
    return true
  } catch {
    return false
  }
}

/**
 * Create (or reuse if all files exist and are valid) a dev CA, a server cert
 * (serverAuth EKU) and a client cert (clientAuth EKU, URI SAN = SPIFFE id)
 * under dir.
 */
export async function ensureDevPki(dir: string, opts?: DevPkiOptions): Promise<DevPki> {
  const o = resolveOpts(opts)
  const pki = pkiPaths(dir)
  if (pkiIsValid(pki, o)) return pki
  return createDevPki(dir, o)
}

/**
 * Issue an extra certificate signed by the dev CA (for tests), written to
 * `<dir>/<name>.crt` and `<dir>/<name>.key`. Returns absolute paths.
 */
export async function issueClientCert(
  pki: DevPki,
  name: string,
  opts: IssueCertOptions = {},
): Promise<{ cert: string; key: string }> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`invalid certificate name ${JSON.stringify(name)}`)
  if (opts.days !== undefined && !Number.isInteger(opts.days)) throw new Error(`days must be an integer, got ${opts.days}`)
  const cert = path.join(pki.dir, `${name}.crt`)
  const key = path.join(pki.dir, `${name}.key`)
  const work = await mkdtemp(path.join(pki.dir, '.pki-tmp-'))
  try {
    const wKey = path.join(work, 'leaf.key')
    const wCert = path.join(work, 'leaf.crt')
    await genKey(wKey, work)
    await signLeaf(
      { cert: pki.caCert, key: pki.caKey },
      wKey,
      wCert,
      {
        cn: opts.cn ?? name,
        eku: opts.eku ?? 'clientAuth',
        dns: opts.dnsNames ?? [],
        ips: [],
        uris: opts.spiffeId ? [opts.spiffeId] : [],
        days: opts.days ?? DEFAULT_DAYS,
        notBefore: opts.notBefore,
        notAfter: opts.notAfter,
      },
      work,
    )
    await rename(wKey, key)
    await rename(wCert, cert)
  } finally {
    await rm(work, { recursive: true, force: true })
  }
  return { cert, key }
}
