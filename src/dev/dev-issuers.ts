/**
 * The dev token and approval issuers of a `dev: true` config, created on
 * first use: for each `identity.jwt[].jwks_file` and
 * `identity.approvals[].jwks_file` that does not exist yet, a dev key pair
 * (signing-key.jwk next to it, the public half as that JWKS). `serve`,
 * `token` and `approve` all call this before loading the config, so either may come
 * first. A config without `dev: true` is never touched: there a missing
 * JWKS file is a config error.
 */
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'
import { Reader } from '../config/reader.js'
import { ensureDevIssuerKeys } from './tokens.js'

/** Returns the JWKS files created. Problems in the file are left for the config loader to report. */
export async function ensureDevIssuersOf(configPath: string): Promise<string[]> {
  const file = path.resolve(configPath)
  let doc: unknown
  try {
    doc = parse(readFileSync(file, 'utf8'))
  } catch {
    return []
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) return []
  const top = doc as Record<string, unknown>
  if (top.dev !== true && top.dev !== 'true') return []
  const identity = top.identity as Record<string, unknown> | null | undefined
  const reader = new Reader(path.dirname(file), process.env)
  const created: string[] = []
  for (const list of ['jwt', 'approvals']) {
    const issuers = identity?.[list]
    if (!Array.isArray(issuers)) continue
    for (const [i, issuer] of issuers.entries()) {
      const raw = (issuer as { jwks_file?: unknown } | null)?.jwks_file
      if (raw === undefined || raw === null) continue
      let jwksFile: string
      try {
        jwksFile = reader.path(raw, ['identity', list, i, 'jwks_file'])
      } catch {
        continue
      }
      if (existsSync(jwksFile)) continue
      await ensureDevIssuerKeys(path.dirname(jwksFile), jwksFile)
      created.push(jwksFile)
    }
  }
  return created
}
