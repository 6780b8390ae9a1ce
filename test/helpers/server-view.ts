/**
 * What the server itself says about a governed session's connection: the
 * governed settings as the session sees them, application_name as
 * pg_stat_activity shows it, the backend PID and PostgreSQL's session id
 * (`%c`). SHOW and current_setting must agree.
 */
import type pg from 'pg'

export interface ServerView {
  sessionId: string
  appName: string
  activityAppName: string
  pid: number
  serverSessionId: string
}

export async function serverView(c: pg.Client): Promise<ServerView> {
  const r = await c.query(
    "select current_setting('pgwitness.session_id') as sid, current_setting('application_name') as app, " +
      '(select application_name from pg_stat_activity where pid = pg_backend_pid()) as act, pg_backend_pid() as pid, ' +
      "(select to_hex(floor(extract(epoch from backend_start))::bigint) || '.' || to_hex(pid) from pg_stat_activity where pid = pg_backend_pid()) as c",
  )
  const row = r.rows[0] as { sid: string; app: string; act: string; pid: number; c: string }
  const show = await c.query('SHOW pgwitness.session_id')
  const shown = (show.rows[0] as Record<string, string>)['pgwitness.session_id']
  if (shown !== row.sid) throw new Error(`SHOW pgwitness.session_id (${shown}) and current_setting (${row.sid}) disagree`)
  return { sessionId: row.sid, appName: row.app, activityAppName: row.act, pid: row.pid, serverSessionId: row.c }
}
