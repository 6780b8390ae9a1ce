/**
 * report.html: the report for people. One self-contained file — inline CSS
 * and inline SVG, no script, no font, no external reference — so it opens
 * offline and can be attached to an audit. Long tables are capped (the
 * full rows are in the CSV files next to it).
 */
import type { ReportJson, SectionIntegrity } from './report-json.js'
import { esc, sessionTimeline, stackedBars } from './svg.js'

const HTML_ROWS = 200

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1100px;margin:0 auto;padding:16px 24px}
h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:28px 0 6px;border-bottom:2px solid #ddd;padding-bottom:4px}h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;width:100%;margin:6px 0 10px;background:#fff}th,td{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top;font-size:13px}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px;word-break:break-all}
.verdict{padding:12px 16px;border-radius:6px;font-size:16px}.verdict.intact{background:#e3f4e8;border:1px solid #3a9a5b}.verdict.broken{background:#fbe4e1;border:1px solid #b8443a}
.banner{background:#fbe4e1;border-left:5px solid #b8443a;padding:6px 10px;margin:6px 0}.period{color:#555;font-size:13px}.note{color:#555;font-size:13px}
.sev-high{color:#b8443a;font-weight:600}.sev-medium{color:#b36b00;font-weight:600}.sev-low{color:#555}
tr.unverified td{background:#fdf1ef}.legend .key{margin-right:12px;font-size:12px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
nav a{margin-right:12px}figure{margin:6px 0}figcaption{font-size:12px;color:#555}.ax{font-size:11px;fill:#555}.empty{color:#777;font-style:italic}
details{margin:6px 0;background:#fff;border:1px solid #ddd;padding:4px 8px}summary{cursor:pointer}
`

type Row = Array<string | number | null | undefined>

function table(head: string[], rows: Row[], opts: { total?: number; csv?: string; unverified?: boolean[] } = {}): string {
  if (rows.length === 0) return '<p class="empty">None in the period.</p>'
  const shown = rows.slice(0, HTML_ROWS)
  const body = shown
    .map((r, i) => `<tr${opts.unverified?.[i] ? ' class="unverified" title="from the part of the log after the first integrity problem"' : ''}>${r.map((c) => (typeof c === 'number' ? `<td class="n">${c}</td>` : `<td>${esc(c ?? '')}</td>`)).join('')}</tr>`)
    .join('')
  const total = opts.total ?? rows.length
  const more = total > shown.length ? `<p class="note">Showing ${shown.length} of ${total} rows${opts.csv ? `; all of them are in <code>${esc(opts.csv)}</code>` : ''}.</p>` : ''
  return `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>${more}`
}

function counted(list: Array<{ key: string; count: number }>): string {
  return list.map((e) => `${e.key} (${e.count})`).join(', ')
}

function section(id: string, title: string, r: ReportJson, integrity: SectionIntegrity, body: string): string {
  const banner = integrity.verdict === 'broken'
    ? `<div class="banner"><b>Integrity: BROKEN.</b> The audit log is not intact (see the verdict above), so this section may be incomplete or rest on altered records${integrity.unverified_rows > 0 ? `; ${integrity.unverified_rows} row(s) below come from records after the first problem (shaded)` : ''}.</div>`
    : ''
  return `<section id="${id}" data-verdict="${integrity.verdict}"><h2>${esc(title)}</h2>${banner}<p class="period">Period: ${esc(period(r))}</p>${body}</section>`
}

function period(r: ReportJson): string {
  const s = r.scope
  const from = s.since ?? s.first_record_in_period ?? '—'
  const to = s.until ?? s.last_record_in_period ?? '—'
  return `${from} to ${to}${s.identity ? `, identity ${s.identity}` : ''}${s.session ? `, session ${s.session}` : ''}`
}

function verdict(r: ReportJson): string {
  const g = r.integrity
  const ok = g.verdict === 'intact'
  const p = g.first_problem
  const coverage = g.signatures_checked
    ? `${g.checkpoints} signed checkpoint(s) verified${g.signed_through_seq !== null ? `; signed through seq ${g.signed_through_seq}` : ''}; unsigned tail: ${g.unsigned_tail} record(s)`
    : `${g.checkpoints} checkpoint(s) found; signatures NOT checked (no --public-key): a tail rewritten with a recomputed chain would go unseen`
  return `<section id="integrity" data-verdict="${g.verdict}"><h2>Integrity verdict</h2>
<div class="verdict ${g.verdict}"><b>${ok ? 'INTACT' : 'BROKEN'}</b> — ${ok
    ? `${g.records_verified} record(s), seq ${g.first_seq ?? '—'}..${g.last_seq ?? '—'}, chain and checkpoints check out.`
    : `${esc(p?.file)}:${p?.line}: ${esc(p?.reason.replaceAll('_', ' '))}: ${esc(p?.message)}`}</div>
${ok ? '' : `<p>${g.records_verified} record(s) before the problem are intact; ${g.records_not_verified} record(s) from it on are NOT verified and are marked in every section${g.unreadable_lines > 0 ? `; ${g.unreadable_lines} line(s) could not be read as records` : ''}.</p>`}
<p>Signed checkpoints: ${esc(coverage)}. Signing key id(s): ${g.signing_key_ids.length ? g.signing_key_ids.map((k) => `<code>${esc(k)}</code>`).join(', ') : 'none'}.</p>
${table(['file', 'intact records', 'first seq', 'last seq'], g.files.map((f) => [f.path, f.records_intact, f.first_seq, f.last_seq]))}
<details><summary>As <code>pgwitness verify</code> says it</summary><pre class="mono">${esc(g.summary)}</pre></details></section>`
}

function findings(r: ReportJson): string {
  const f = r.findings
  const t = r.thresholds
  const rows = f.findings.map((x) => `<tr${x.intact ? '' : ' class="unverified"'}><td class="sev-${x.severity}">${x.severity}</td><td>${esc(x.title)}</td><td class="mono">${esc(x.key)}</td><td>${esc(x.detail)}</td><td class="n">${x.count}</td><td>${esc(x.first_time)}<br>${esc(x.last_time)}</td><td class="mono">${x.records.map((ref) => `seq ${ref.seq}`).join(', ')}${x.count > x.records.length ? ' …' : ''}</td></tr>`)
  const body = rows.length === 0 ? '<p class="empty">No findings in the period.</p>'
    : `<table><thead><tr><th>severity</th><th>finding</th><th>about</th><th>detail</th><th>records</th><th>first / last</th><th>records behind it (chain seq)</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
  return section('findings', 'Findings', r, f.integrity, `<p class="note">Thresholds: ${t.auth_failures} failed logins within ${t.auth_window_minutes} min; bulk read over ${t.bulk_rows} rows; working hours ${esc(t.working_hours)}; sensitive objects ${t.sensitive.length ? esc(t.sensitive.join(', ')) : '(none configured)'}; ticket claims ${esc(t.ticket_claims.join(', '))}. New identities: ${f.new_identity_baseline ? esc(f.new_identity_baseline) : 'not judged (no records before the period to compare with)'}.</p>${body}${f.not_listed > 0 ? `<p class="note">${f.not_listed} further finding(s) not listed.</p>` : ''}`)
}

function inventory(r: ReportJson): string {
  const rows = r.inventory.identities.map((i) => [
    i.subject, i.method, i.issuer, i.spiffe_ids.join(' '), i.first_seen, i.last_seen, i.sessions, i.statements, counted(i.source_addresses),
    `${i.token_ids.length} token id(s)${i.token_ids.length ? `: ${i.token_ids.slice(-3).map((c) => `${c.id} (${c.first_seen}…${c.last_seen})`).join('; ')}` : ''}`,
    `${i.cert_sha256.length} certificate(s)${i.cert_sha256.length ? `: ${i.cert_sha256.slice(-3).map((c) => `${c.id.slice(0, 16)}… (${c.first_seen}…${c.last_seen})`).join('; ')}` : ''}`,
    counted(i.roles), counted(i.databases),
  ])
  return section('inventory', 'Identity inventory', r, r.inventory.integrity,
    table(['subject', 'method', 'issuer', 'SPIFFE id', 'first seen', 'last seen', 'sessions', 'statements', 'source addresses', 'tokens (latest)', 'certificates (latest)', 'roles', 'databases'], rows, { unverified: r.inventory.identities.map((i) => !i.intact) }))
}

function access(r: ReportJson): string {
  const a = r.access
  const rows = a.rows.map((c) => [c.identity, c.role, c.database, c.sessions, c.statements, Object.entries(c.classes).map(([k, v]) => `${k} ${v}`).join(', '), c.denied, c.last_use, c.policy_rules.join(', ')])
  const unused = a.unused_grants === null
    ? '<p class="note">Grants not used: give <code>--config</code> (the proxy\'s config) to list what its policy allows but nobody used.</p>'
    : `<h3>Allowed by policy but not used in the period (candidates for removal)</h3>${table(['policy rule', 'grants to', 'role', 'database', 'why listed'], a.unused_grants.map((u) => [u.rule, u.match, u.role, u.database, u.reason]))}`
  return section('access', 'Access review: who used which role on which database', r, a.integrity,
    table(['identity', 'role', 'database', 'sessions', 'statements', 'by class', 'denied', 'last use', 'admitted by rule'], rows, { unverified: a.rows.map((c) => !c.intact) }) + unused)
}

function privileged(r: ReportJson): string {
  const p = r.privileged
  const rows = p.rows.map((x) => [x.time, x.identity, `${x.role}@${x.database}`, x.session, x.command, x.objects, x.status, x.effect, x.ticket ?? '— none —', x.rule, x.text])
  return section('privileged', 'Privileged activity (DDL, role changes, refused statements)', r, p.integrity,
    table(['time', 'who', 'role@database', 'session', 'command', 'objects', 'outcome', 'transaction effect', 'approval / ticket', 'statement rule', 'text'], rows, { total: p.total, csv: p.csv, unverified: p.rows.map((x) => !x.intact) }))
}

function failedLogins(r: ReportJson): string {
  const f = r.failed_logins
  const summary = `<p>${f.total} failed login(s). By reason: ${esc(counted(f.by_reason)) || '—'}.<br>By subject: ${esc(counted(f.by_subject)) || '—'}.<br>By source address: ${esc(counted(f.by_source)) || '—'}.</p>`
  return section('failed-logins', 'Failed logins', r, f.integrity, summary + stackedBars(f.over_time, 'Failed logins over time, by reason') +
    table(['time', 'reason', 'method', 'subject', 'source address', 'requested user', 'database', 'detail'], f.rows.map((x) => [x.time, x.reason, x.method, x.subject, x.source, x.user, x.database, x.detail]), { total: f.total, csv: f.csv, unverified: f.rows.map((x) => !x.intact) }))
}

function timelines(r: ReportJson): string {
  const t = r.timelines
  const parts = t.shown.map((s) => {
    const rows = s.events.map((e) => [e.time, e.kind === 'statement' ? e.statement_seq : '', e.classes.join(' '), e.command, e.objects, e.status, e.rows, e.duration_us === null ? null : Math.round(e.duration_us / 100) / 10, e.text])
    return `<details open class="session" data-session="${esc(s.session)}"><summary><b>${esc(s.identity)}</b> as ${esc(s.role)}@${esc(s.database)} — session <code>${esc(s.session)}</code>, ${esc(s.started_at)} to ${esc(s.ended_at ?? 'not ended in the period')} (${esc(s.end_reason ?? '')}), ${s.statements} statement(s), ${s.errors} error(s), ${s.denied} denied, from ${esc(s.source ?? '?')}</summary>` +
      sessionTimeline(s) + table(['time', '#', 'class', 'command', 'objects', 'outcome', 'rows', 'duration ms', 'text'], rows, { total: s.events.length + s.events_not_listed, csv: t.csv.statements, unverified: s.events.map((e) => !e.intact) }) + '</details>'
  })
  const note = `<p class="note">${t.sessions} session(s) in the period; ${t.shown.length} shown here. Every statement is in <code>${esc(t.csv.statements)}</code>, every session in <code>${esc(t.csv.sessions)}</code>${r.scope.session ? '' : '; use <code>--session ID</code> for one session in full'}. Marks: green ok, orange error, red denied, tall = privileged, blue/purple = transaction committed/rolled back.</p>`
  return section('timelines', 'Session timelines', r, t.integrity, note + (parts.join('') || '<p class="empty">No sessions in the period.</p>'))
}

export function renderHtml(r: ReportJson): string {
  const nav = [['integrity', 'Integrity'], ['findings', 'Findings'], ['activity', 'Activity'], ['inventory', 'Identities'], ['access', 'Access review'], ['privileged', 'Privileged'], ['failed-logins', 'Failed logins'], ['timelines', 'Sessions']]
    .map(([id, name]) => `<a href="#${id}">${name}</a>`).join('')
  const activity = section('activity', 'Activity over time', r, r.activity.integrity, stackedBars(r.activity.statements_over_time, 'Statements over time, by identity'))
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>pgwitness access report ${esc(period(r))}</title><style>${CSS}</style></head><body><main>
<h1>pgwitness access report</h1><p class="period">Period: ${esc(period(r))} · ${r.scope.records_in_period} record(s) in the period · generated ${esc(r.generated_at)} by pgwitness ${esc(r.pgwitness_version)}</p>
<nav>${nav}</nav>
<p class="note">How to read it: first the verdict — INTACT means every record is as the proxy wrote it (and, with signed checkpoints, none was cut off or rewritten); BROKEN means the log was altered or is incomplete, and every section says so. Then the findings: what deserves a look, each with the log records behind it (their chain seq). The other sections answer who used which database role, what each session did in order, and who failed to log in.</p>
${verdict(r)}${findings(r)}${activity}${inventory(r)}${access(r)}${privileged(r)}${failedLogins(r)}${timelines(r)}
<p class="note">The same content for machines is in report.json; full tables in the CSV files next to this page.</p>
</main></body></html>
`
}
