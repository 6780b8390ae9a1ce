/**
 * Charts drawn as inline SVG (no library, no script): stacked bars of counts
 * over time, and a session's timeline. Every text is escaped.
 */
import type { SeriesJson } from './time-series.js'
import type { SessionTimeline } from './timelines.js'

export function esc(s: unknown): string {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)
}

const PALETTE = ['#2f6db5', '#d9822b', '#3a9a5b', '#b8443a', '#7b57b0', '#8c6d3f', '#c55f9f', '#6b6b6b', '#37a3a8', '#a3a136', '#1f3f73', '#e0a84f']

function fmtTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 16)
}

/** Stacked bars: one bar per time bucket, one colour per series, with a legend. */
export function stackedBars(data: SeriesJson, title: string): string {
  if (data.start === null || data.series.length === 0) return `<p class="empty">${esc(title)}: nothing in the period.</p>`
  const n = Math.max(1, data.series[0]!.counts.length)
  const W = 760
  const H = 180
  const left = 44
  const bottom = 28
  const plotW = W - left - 10
  const plotH = H - bottom - 10
  const totals = Array.from({ length: n }, (_, i) => data.series.reduce((a, s) => a + (s.counts[i] ?? 0), 0))
  const max = Math.max(1, ...totals)
  const bw = plotW / n
  const parts: string[] = []
  for (let i = 0; i < n; i++) {
    let y = 10 + plotH
    for (let k = 0; k < data.series.length; k++) {
      const c = data.series[k]!.counts[i] ?? 0
      if (c === 0) continue
      const h = (c / max) * plotH
      y -= h
      parts.push(`<rect x="${(left + i * bw).toFixed(1)}" y="${y.toFixed(1)}" width="${Math.max(1, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="${PALETTE[k % PALETTE.length]}"><title>${esc(data.series[k]!.name)}: ${c} (${esc(fmtTime(data.start + i * data.bucketMs))})</title></rect>`)
    }
  }
  const axis = [
    `<line x1="${left}" y1="${10 + plotH}" x2="${W - 10}" y2="${10 + plotH}" stroke="#999"/>`,
    `<text x="${left - 4}" y="16" text-anchor="end" class="ax">${max}</text>`,
    `<text x="${left - 4}" y="${10 + plotH}" text-anchor="end" class="ax">0</text>`,
    `<text x="${left}" y="${H - 8}" class="ax">${esc(fmtTime(data.start))}</text>`,
    `<text x="${W - 10}" y="${H - 8}" text-anchor="end" class="ax">${esc(fmtTime(data.start + n * data.bucketMs))} UTC</text>`,
  ]
  const legend = data.series.map((s, k) => `<span class="key"><i style="background:${PALETTE[k % PALETTE.length]}"></i>${esc(s.name)} (${s.total})</span>`).join(' ')
  const bucket = data.bucketMs >= 3_600_000 ? `${data.bucketMs / 3_600_000} h` : `${data.bucketMs / 60_000} min`
  return `<figure><svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(title)}">${parts.join('')}${axis.join('')}</svg>` +
    `<figcaption>${esc(title)} — one bar per ${bucket}.</figcaption><div class="legend">${legend}</div></figure>`
}

const STATUS_COLOUR: Record<string, string> = { ok: '#3a9a5b', error: '#d9822b', denied: '#b8443a', cancelled: '#6b6b6b', unknown: '#6b6b6b' }

/** A session's events along a time axis: a mark per statement, coloured by outcome, taller when privileged. */
export function sessionTimeline(s: SessionTimeline): string {
  const events = s.events
  if (events.length === 0) return ''
  const W = 760
  const H = 70
  const span = Math.max(1, ...events.map((e) => e.offset_ms))
  const x = (ms: number) => 10 + (ms / span) * (W - 20)
  const marks = events.map((e) => {
    const colour = e.kind === 'statement' ? STATUS_COLOUR[e.status] ?? '#6b6b6b' : e.kind === 'transaction.end' ? (e.status === 'committed' ? '#2f6db5' : '#7b57b0') : '#999'
    const h = e.privileged ? 40 : e.kind === 'statement' ? 24 : 14
    return `<rect x="${x(e.offset_ms).toFixed(1)}" y="${50 - h}" width="3" height="${h}" fill="${colour}"><title>${esc(e.time)} ${esc(e.command)} ${esc(e.objects)} — ${esc(e.status)}</title></rect>`
  })
  return `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="timeline of session ${esc(s.session)}">` +
    `<line x1="10" y1="50" x2="${W - 10}" y2="50" stroke="#999"/>${marks.join('')}` +
    `<text x="10" y="66" class="ax">+0 s</text><text x="${W - 10}" y="66" text-anchor="end" class="ax">+${(span / 1000).toFixed(1)} s</text></svg>`
}
