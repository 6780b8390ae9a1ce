import pino, { type Logger } from 'pino'
import type { LogConfig } from './config/types.js'

/**
 * The operational log: JSON lines on stderr (stdout may carry the audit
 * stream). Redaction is defence in depth: no code path logs a token,
 * password or parameter value, and these paths are censored if one ever does.
 */
export function createLogger(cfg: LogConfig): Logger {
  return pino(
    {
      level: cfg.level,
      base: { svc: 'pgwitness' },
      redact: { paths: ['password', 'token', '*.password', '*.token', 'parameters', '*.parameters'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ fd: 2, sync: false }),
  )
}
