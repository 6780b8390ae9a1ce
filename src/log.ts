import pino, { type Logger } from 'pino'
import pretty from 'pino-pretty'
import type { LogConfig } from './config/types.js'

/**
 * The operational log: JSON lines on stderr (stdout may carry the audit
 * stream). Redaction is defence in depth: no code path logs a token,
 * password or parameter value, and these paths are censored if one ever does.
 */
export function createLogger(cfg: LogConfig): Logger {
  // log.format: pretty is for people at a terminal; JSON (default) for log pipelines.
  const destination = cfg.format === 'pretty'
    ? pretty({ destination: 2, colorize: process.stderr.isTTY, translateTime: 'SYS:standard', ignore: 'pid,hostname,svc' })
    : pino.destination({ fd: 2, sync: false })
  return pino(
    {
      level: cfg.level,
      base: { svc: 'pgwitness' },
      redact: { paths: ['password', 'token', '*.password', '*.token', 'parameters', '*.parameters'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  )
}
