import path from 'node:path'
import pg from 'pg'
import { loadConfig } from '../config/load.js'
import type { PgwitnessConfig } from '../config/types.js'
import { startPostgresCluster } from './cluster.js'
import { ensureDevPki } from './pki.js'
import { ensureDevIssuersOf } from './dev-issuers.js'

export const DEV_CONFIG_PATH = 'config/dev.yaml'
export const DEV_ISSUER_DIR = '.pgwitness-dev'

/**
 * The zero-configuration local setup behind `npm start`: dev TLS certificate
 * and dev token issuer (created on first use), config/dev.yaml, and an
 * upstream PostgreSQL — the local one on 5432 if it admits "postgres"
 * without a password (trust), otherwise a throwaway cluster started from the
 * server binaries on this machine and stopped when the proxy exits.
 */
export async function prepareDevDefault(root: string): Promise<{ config: PgwitnessConfig; connectHint: string }> {
  await ensureDevPki(path.join(root, 'certs', 'dev'))
  const configPath = path.join(root, DEV_CONFIG_PATH)
  await ensureDevIssuersOf(configPath)
  const config = await loadConfig(configPath)
  let upstreamNote: string
  if (await admitsWithoutPassword(config.upstream.host, config.upstream.port)) {
    upstreamNote = `upstream: the local PostgreSQL on ${config.upstream.host}:${config.upstream.port}`
  } else {
    const cluster = await startPostgresCluster({ auth: 'trust' })
    // Stopped (SIGQUIT) by the cluster module's exit hook, its watchdog removes the data.
    config.upstream.host = cluster.host
    config.upstream.port = cluster.port
    upstreamNote = `upstream: a throwaway PostgreSQL on ${cluster.host}:${cluster.port} (data in ${cluster.dataDir}, removed at exit)`
  }
  const connectHint = [
    `pgwitness (dev default) is listening on ${config.listen.host}:{port}; ${upstreamNote}`,
    `audit log: ${config.audit.log}`,
    'Connect with psql, using a dev token as the password:',
    `  PGPASSWORD="$(node ${path.relative(process.cwd(), path.join(root, 'dist', 'cli.js')) || 'dist/cli.js'} token)" \\`,
    `    psql "host=${config.listen.host} port={port} sslmode=require user=postgres dbname=postgres"`,
  ].join('\n')
  return { config, connectHint }
}

async function admitsWithoutPassword(host: string, port: number): Promise<boolean> {
  const c = new pg.Client({ host, port, user: 'postgres', database: 'postgres', password: '', connectionTimeoutMillis: 2000 })
  c.on('error', () => undefined)
  try {
    await c.connect()
    await c.end()
    return true
  } catch {
    return false
  }
}
