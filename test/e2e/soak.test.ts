/**
 * Issue 8 item 6, the suite's short soak: bench/soak.ts for two minutes — a
 * mixed workload (simple and extended protocol, prepared statements,
 * transactions, COPY in and out, intended errors, reconnects) through a
 * pgwitness process, sampling its RSS and file descriptors every 10 s.
 * No errors but the intended ones, every statement and session recorded,
 * the descriptors back to their idle count after the clients leave and flat
 * under load. RSS is only bounded loosely here (two minutes include the
 * warm-up); its flatness is judged by the 30-minute run (npx tsx bench/soak.ts,
 * figures in bench/RESULTS.md).
 */
import t from 'tap'
import { report, runSoak } from '../../bench/soak.js'

t.test('a two-minute soak', async (t) => {
  const r = await runSoak({ durationMs: 110_000, sampleEveryMs: 10_000, workers: 4, paceMs: 20, audit: 'strict', launcher: 'tsx', log: (l) => t.comment(l) })
  t.comment(report(r))
  t.ok(r.sent.statements > 1000 && r.sent.copies > 0 && r.sent.reconnects > 10 && r.sent.intendedErrors > 0, `a real workload ran: ${JSON.stringify(r.sent)}`)
  t.same(r.unexpected, [], 'no error but the intended ones')
  t.equal(r.unexpectedCount, 0)
  t.equal(r.recorded.statements, r.sent.statements, 'one statement record per statement sent')
  t.equal(r.recorded.errors, r.sent.intendedErrors, 'one error record per intended error')
  t.equal(r.recorded.unknown, 0, 'no outcome unknown')
  t.equal(r.recorded.sessionStarts, r.sent.sessions, 'a session.start per session')
  t.equal(r.recorded.sessionEnds, r.recorded.sessionStarts, 'and its session.end')
  t.ok(r.checks['file descriptors back to idle after the clients left'], `file descriptors back to idle: ${r.idle.before.fds} -> ${r.idle.after.fds}`)
  t.ok(r.thirds.fdsLast <= r.thirds.fdsFirst + 8, `file descriptors flat under load: ${r.thirds.fdsFirst} -> ${r.thirds.fdsLast}`)
  const peak = Math.max(...r.samples.map((s) => s.rssMiB))
  t.ok(peak < 1024, `RSS stays under 1 GiB (peak ${peak.toFixed(1)} MiB)`)
  t.ok(r.thirds.rssLast <= 2 * r.thirds.rssFirst + 64, `RSS does not run away: ${r.thirds.rssFirst.toFixed(1)} -> ${r.thirds.rssLast.toFixed(1)} MiB`)
})
