/**
 * The development approvals issuer: a key pair of its own (an approvals
 * issuer must not be a token issuer), created on first use next to the dev
 * token issuer. For `pgwitness approve` and the tests only; production
 * approvals come from the change or access-request system.
 */
import type { JWK } from 'jose'
import { DEV_AUDIENCE, mintDevToken } from './tokens.js'

export const DEV_APPROVALS_ISSUER = 'https://approvals.dev.pgwitness.local'

export interface DevApprovalOptions {
  issuer?: string
  audience?: string
  /** The identity's subject the approval is granted to. */
  subject: string
  ticket: string
  approver: string
  roles: string[]
  /** Default: any database. */
  databases?: string[]
  /** Default: any class. */
  classes?: string[]
  /** Lifetime in seconds (default 3600). Negative values mint an already-expired approval. */
  ttlSeconds?: number
}

export function mintDevApproval(privateJwk: JWK, o: DevApprovalOptions): Promise<string> {
  return mintDevToken(privateJwk, {
    issuer: o.issuer ?? DEV_APPROVALS_ISSUER,
    audience: o.audience ?? DEV_AUDIENCE,
    subject: o.subject,
    ttlSeconds: o.ttlSeconds ?? 3600,
    claims: {
      ticket: o.ticket,
      approver: o.approver,
      roles: o.roles,
      databases: o.databases ?? ['*'],
      ...(o.classes ? { classes: o.classes } : {}),
    },
  })
}
