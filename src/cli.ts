#!/usr/bin/env node
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { loadConfig, ConfigError } from './config/load.js'
import type { PgwitnessConfig } from './config/types.js'
import type { KeyObject } from 'node:crypto'
import { formatSummary, verifyChain } from './ledger/verify.js'
import { loadCheckpointPublicKeyFiles, writeCheckpointKeyPair } from './ledger/checkpoint.js'
import { REPORT_HELP, reportCommand } from './report/command.js'
import { createDevPki } from './dev/pki.js'
import { prepareDevDefault, DEV_CONFIG_PATH } from './dev/default.js'
import { ensureDevIssuersOf } from './dev/dev-issuers.js'
import { DEV_AUDIENCE, ensureDevIssuerKeys, mintDevToken } from './dev/tokens.js'
import { mintDevApproval } from './dev/approvals.js'
import { createLogger } from './log.js'
import { VERSION } from './version.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..')

const HELP: Record<string, string> = {
  main: `pgwitness ${VERSION} — identity-aware PostgreSQL proxy with a per-statement audit trail

Usage: pgwitness <command> [options]

Commands:
  serve [--config FILE]        run the proxy (no --config: local dev default)
  check-config FILE            validate a config file and exit
  token [options]              mint a dev token (dev configs only)
  approve [options]            mint a dev approval (dev configs only)
  certs [--out DIR]            create a dev CA, server cert and SPIFFE client cert
  verify FILE...               check an audit log's hash chain and signed checkpoints
  report --out DIR FILE...     access review, session timelines and findings (HTML, JSON, CSV) from a verified log
  keygen [--out PREFIX]        create an Ed25519 key pair for signed checkpoints

Run 'pgwitness <command> --help' for a command's options.`,
  serve: `Usage: pgwitness serve [--config FILE]

Runs the proxy. Without --config, the local dev default (config/dev.yaml) is
used: dev TLS certificate and token issuer are created on first use, and the
upstream is the local PostgreSQL on 127.0.0.1:5432 when it admits "postgres"
without a password, otherwise a throwaway cluster started from the
PostgreSQL server binaries on this machine.
Stops on SIGTERM/SIGINT (sessions end with FATAL 57P01, audit log flushed).`,
  'check-config': `Usage: pgwitness check-config FILE

Loads and validates FILE (env/file references included). Exit 0 if valid,
2 with "config: <key>: <problem>" otherwise.`,
  token: `Usage: pgwitness token [--config FILE] [--sub S] [--ttl 15m] [--aud A] [--claim k=v]...

Mints a token signed with the dev issuer's key (next to its jwks_file), for
local testing. A jwks_file that does not exist yet is created with a new dev
issuer, as serve does. Refuses to run against a config without "dev: true".
  --sub S      subject (default: dev-user)
  --ttl D      lifetime: 30s, 15m, 2h (default 15m)
  --aud A      audience (default: pgwitness)
  --claim k=v  extra claim; v is parsed as JSON when it can be (groups=["dba"])`,
  approve: `Usage: pgwitness approve --sub S --ticket T --approver A --role R [--database D] [--class C] [--ttl 1h] [--config FILE]

Mints an approval signed with the dev approvals issuer's key (next to the
jwks_file of its identity.approvals entry), for local testing. Present it at
connect time: PGOPTIONS="-c pgwitness.approval=$(pgwitness approve ...)".
Refuses to run against a config without "dev: true".
  --sub S       the identity's subject it is granted to (required)
  --ticket T    change ticket (required)
  --approver A  who approved it (required)
  --role R      upstream role it covers (repeatable; required)
  --database D  database it covers (repeatable; default: any)
  --class C     statement class it covers: DDL, ROLE, ... (repeatable; default: any)
  --ttl D       lifetime: 30s, 15m, 2h (default 1h)`,
  certs: `Usage: pgwitness certs [--out DIR]

Creates (overwrites) a dev CA, a server certificate for localhost/127.0.0.1
and a client certificate with a SPIFFE URI SAN in DIR (default certs/dev).`,
  verify: `Usage: pgwitness verify FILE... [--public-key PATH]... [--partial] [--allow-unsigned-tail] [--json]

Checks an audit log: every line is the canonical JSON of its record,
chain.hash is the SHA-256 of the record without chain.hash, chain.seq counts
up by one and chain.prev is the previous record's hash; every checkpoint
record signs the chain head just before it.
Several files are one log in order (rotated files oldest first, then the
active one; e.g. audit/audit.*.jsonl audit/audit.jsonl): each file's first
record must continue the previous file's last, and the first file must start
at seq 1.
Exit 0 and a summary when intact; exit 1 with FILE:LINE, the reason and what
it means at the first problem: an edited record (hash mismatch), a deleted,
inserted or reordered record (seq gap, seq back, prev mismatch), a line that
is not the canonical form of its record, invalid JSON, a last line without
its newline (truncated), a checkpoint that does not sign the chain before it
or whose signature does not verify, or (with --public-key) records after the
last checkpoint; exit 2 if a file cannot be read.
  --public-key PATH      checkpoint verification key: a public JWK, a JWK Set
                         or a PEM key (repeatable). Without it the chain and
                         the checkpoints' shape are checked, not signatures, so
                         a tail rewritten with a recomputed chain goes unseen
  --allow-unsigned-tail  with --public-key, accept records after the last
                         checkpoint (a log still being written, or cut by a
                         crash: at most audit.checkpoint.every_records or
                         every_seconds of records)
  --partial              the first file may start mid-chain (the log's
                         earlier files are not at hand)
  --json                 print the result as JSON`,
  report: REPORT_HELP,
  keygen: `Usage: pgwitness keygen [--out PREFIX]

Creates an Ed25519 key pair for signed audit checkpoints: PREFIX.jwk (the
private key, mode 0600: audit.checkpoint.key) and PREFIX.pub.jwk (the public
key: pgwitness verify --public-key). Default PREFIX: audit-signing in the
current directory. Refuses to overwrite existing files; prints the key id
(proxy.start records it as checkpoint_key_id).
The same key from openssl: openssl genpkey -algorithm ed25519 -out key.pem
(and openssl pkey -in key.pem -pubout -out key.pub.pem for verify).`,
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    console.log(HELP.main)
    return command === undefined ? 1 : 0
  }
  if (command === '--version') {
    console.log(VERSION)
    return 0
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    const h = HELP[command]
    if (!h) return unknown(command)
    console.log(h)
    return 0
  }
  switch (command) {
    case 'serve':
      return serve(rest)
    case 'check-config':
      return checkConfig(rest)
    case 'token':
      return token(rest)
    case 'approve':
      return approve(rest)
    case 'certs':
      return certs(rest)
    case 'verify':
      return verify(rest)
    case 'report':
      return reportCommand(rest)
    case 'keygen':
      return keygen(rest)
    default:
      return unknown(command)
  }
}

function unknown(command: string): number {
  console.error(`pgwitness: unknown command "${command}"\n\n${HELP.main}`)
  return 1
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } })
  let config: PgwitnessConfig
  let connectHint: string | null = null
  if (values.config) {
    await ensureDevIssuersOf(values.config)
    config = await loadConfig(values.config)
  } else {
    const dev = await prepareDevDefault(ROOT)
    config = dev.config
    connectHint = dev.connectHint
  }
  const log = createLogger(config.log)
  // Loaded here, not at the top: the proxy's modules (the SQL parser, the sinks' clients) would add ~0.3 s to every other command.
  const { ProxyServer } = await import('./server.js')
  const server = await ProxyServer.start(config, log)
  const configPath = values.config
  process.on('SIGHUP', () => {
    if (!configPath) {
      log.warn('SIGHUP: the dev default has no config file to reload; restart instead')
      return
    }
    loadConfig(configPath).then(
      (next) => server.reload(next),
      (err: Error) => log.error({ err: err.message }, 'SIGHUP: the new configuration is invalid; the old one stays in force'),
    ).catch((err: Error) => log.error({ err: err.message }, 'SIGHUP: the new configuration could not be applied; the old one stays in force'))
  })
  if (connectHint) process.stderr.write(`\n${connectHint.replaceAll('{port}', String(server.port))}\n\n`)
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info({ signal }, 'shutting down')
      void server.stop().then(resolve, (err: Error) => {
        log.error({ err: err.message }, 'error during shutdown')
        resolve()
      })
    }
    process.once('SIGTERM', () => stop('SIGTERM'))
    process.once('SIGINT', () => stop('SIGINT'))
  })
  log.flush()
  return 0
}

async function checkConfig(args: string[]): Promise<number> {
  const file = args[0]
  if (!file) {
    console.error(HELP['check-config'])
    return 1
  }
  const c = await loadConfig(file)
  console.log(`config OK: ${c.source} (sha256 ${c.sha256.slice(0, 12)}…): listen ${c.listen.host}:${c.listen.port}, ` +
    `${c.identity.jwt.length} issuer(s), ${c.policy.length} policy rule(s), upstream ${c.upstream.host}:${c.upstream.port} (${c.upstream.tls.mode})`)
  return 0
}

async function token(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      sub: { type: 'string', default: 'dev-user' },
      ttl: { type: 'string', default: '15m' },
      aud: { type: 'string', default: DEV_AUDIENCE },
      claim: { type: 'string', multiple: true, default: [] },
    },
  })
  const config = await loadDevConfig('token', values.config)
  if (config === null) return 2
  const issuer = config.identity.jwt.find((i) => i.jwksFile !== null)
  if (!issuer) {
    console.error('pgwitness token: the dev config has no issuer with a jwks_file')
    return 2
  }
  let keys: Awaited<ReturnType<typeof ensureDevIssuerKeys>>
  try {
    keys = await ensureDevIssuerKeys(path.dirname(issuer.jwksFile!), issuer.jwksFile!)
  } catch (err) {
    console.error(`pgwitness token: ${(err as Error).message}`)
    return 2
  }
  const claims: Record<string, unknown> = {}
  for (const kv of values.claim) {
    const eq = kv.indexOf('=')
    if (eq <= 0) {
      console.error(`pgwitness token: --claim expects k=v, got "${kv}"`)
      return 1
    }
    const raw = kv.slice(eq + 1)
    try {
      claims[kv.slice(0, eq)] = JSON.parse(raw)
    } catch {
      claims[kv.slice(0, eq)] = raw
    }
  }
  const ttl = parseTtl(values.ttl)
  if (ttl === null) {
    console.error(`pgwitness token: --ttl expects e.g. 30s, 15m, 2h; got "${values.ttl}"`)
    return 1
  }
  console.log(await mintDevToken(keys.privateJwk, { issuer: issuer.issuer, audience: values.aud, subject: values.sub, ttlSeconds: ttl, claims }))
  return 0
}

async function approve(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      sub: { type: 'string' },
      ticket: { type: 'string' },
      approver: { type: 'string' },
      role: { type: 'string', multiple: true, default: [] },
      database: { type: 'string', multiple: true, default: [] },
      class: { type: 'string', multiple: true, default: [] },
      ttl: { type: 'string', default: '1h' },
    },
  })
  const missing = (['sub', 'ticket', 'approver'] as const).filter((k) => !values[k]).map((k) => `--${k}`)
  if (values.role.length === 0) missing.push('--role')
  if (missing.length > 0) {
    console.error(`pgwitness approve: ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} required\n${HELP.approve}`)
    return 1
  }
  const ttl = parseTtl(values.ttl)
  if (ttl === null) {
    console.error(`pgwitness approve: --ttl expects e.g. 30s, 15m, 2h; got "${values.ttl}"`)
    return 1
  }
  const config = await loadDevConfig('approve', values.config)
  if (config === null) return 2
  const issuer = config.identity.approvals.find((i) => i.jwksFile !== null)
  if (!issuer) {
    console.error('pgwitness approve: the dev config has no identity.approvals issuer with a jwks_file')
    return 2
  }
  const keys = await ensureDevIssuerKeys(path.dirname(issuer.jwksFile!))
  console.log(await mintDevApproval(keys.privateJwk, {
    issuer: issuer.issuer,
    audience: issuer.audience[0],
    subject: values.sub!,
    ticket: values.ticket!,
    approver: values.approver!,
    roles: values.role,
    ...(values.database.length > 0 ? { databases: values.database } : {}),
    ...(values.class.length > 0 ? { classes: values.class.map((c) => c.toUpperCase()) } : {}),
    ttlSeconds: ttl,
  }))
  return 0
}

/**
 * The config a dev-only command (token, approve) runs against: FILE, or the
 * built-in dev config, whose dev issuers are created first. Null (after
 * saying why) when it is not a dev config.
 */
async function loadDevConfig(command: string, file: string | undefined): Promise<PgwitnessConfig | null> {
  // As serve does: a dev config's token and approval issuers are created on first use, whichever command comes first.
  const configPath = file ?? path.join(ROOT, DEV_CONFIG_PATH)
  await ensureDevIssuersOf(configPath)
  const config = await loadConfig(configPath)
  if (!config.dev) {
    console.error(`pgwitness ${command}: refusing: ${config.source} is not a dev config ("dev: true"); dev ${command === 'token' ? 'tokens' : 'approvals'} are for local testing only`)
    return null
  }
  return config
}

function parseTtl(s: string): number | null {
  const m = /^(\d+)(s|m|h)?$/.exec(s)
  if (!m) return null
  return Number(m[1]) * (m[2] === 'h' ? 3600 : m[2] === 'm' ? 60 : 1)
}

async function certs(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: 'string', default: path.join(ROOT, 'certs', 'dev') } } })
  const pki = await createDevPki(path.resolve(values.out))
  console.log(`dev PKI written to ${pki.dir}:\n  CA      ${pki.caCert}\n  server  ${pki.serverCert} (${pki.serverKey})\n  client  ${pki.clientCert} (${pki.clientKey})`)
  return 0
}

async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      partial: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      'public-key': { type: 'string', multiple: true },
      'allow-unsigned-tail': { type: 'boolean', default: false },
    },
  })
  if (positionals.length === 0) {
    console.error(HELP.verify)
    return 2
  }
  let publicKeys: Map<string, KeyObject> | null
  try {
    publicKeys = loadCheckpointPublicKeyFiles(values['public-key'] ?? [])
  } catch (err) {
    console.error(`pgwitness verify: ${(err as Error).message}`)
    return 2
  }
  const result = await verifyChain(positionals, { partial: values.partial, publicKeys, allowUnsignedTail: values['allow-unsigned-tail'] })
  if (values.json) console.log(JSON.stringify(result, null, 2))
  else (result.ok ? console.log : console.error)(formatSummary(result))
  return result.ok ? 0 : result.failure?.reason === 'unreadable' ? 2 : 1
}

function keygen(args: string[]): number {
  const { values } = parseArgs({ args, options: { out: { type: 'string', default: 'audit-signing' } } })
  const priv = `${values.out}.jwk`
  const pub = `${values.out}.pub.jwk`
  try {
    const { keyId } = writeCheckpointKeyPair(priv, pub)
    console.log(`checkpoint signing key written:\n  private ${priv} (mode 0600; audit.checkpoint.key)\n  public  ${pub} (pgwitness verify --public-key)\n  key id  ${keyId}`)
    return 0
  } catch (err) {
    console.error(`pgwitness keygen: ${(err as Error).message}`)
    return 1
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      console.error(err.message)
      process.exitCode = 2
    } else {
      console.error(`pgwitness: ${(err as Error)?.stack ?? String(err)}`)
      process.exitCode = 1
    }
  },
)
