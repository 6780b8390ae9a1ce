/** HandshakeBudget: the global and per-address caps on handshakes in progress, their release, and reloads. */
import pino from 'pino'
import t from 'tap'
import type { LimitsConfig } from '../../src/config/types.js'
import { PrometheusMetrics } from '../../src/metrics/registry.js'
import { HandshakeBudget } from '../../src/session/handshake-budget.js'
import { parseExposition, sum } from '../helpers/metrics.js'

function budget(maxHandshakes: number, maxHandshakesPerSource: number) {
  const limits = { maxHandshakes, maxHandshakesPerSource } as LimitsConfig
  const metrics = new PrometheusMetrics()
  const b = new HandshakeBudget(() => limits, metrics, pino({ level: 'silent' }))
  const refused = async (reason: string) => sum(parseExposition(await metrics.exposition()), 'pgwitness_handshakes_refused_total', { reason })
  const inProgress = async () => sum(parseExposition(await metrics.exposition()), 'pgwitness_handshakes_in_progress')
  return { b, limits, refused, inProgress }
}

t.test('per-source cap, then the global cap; a release frees the slot once', async (t) => {
  const { b, refused, inProgress } = budget(5, 2)
  const a1 = b.acquire('10.0.0.1')
  const a2 = b.acquire('10.0.0.1')
  t.ok('release' in a1 && 'release' in a2, 'two from one address')
  t.same(b.acquire('10.0.0.1'), { refused: 'max_handshakes_per_source' }, 'a third from it is refused')
  const others = ['10.0.0.2', '10.0.0.2', '10.0.0.3'].map((a) => b.acquire(a))
  t.ok(others.every((o) => 'release' in o), 'other addresses still get slots')
  t.same(b.acquire('10.0.0.4'), { refused: 'max_handshakes' }, 'the sixth overall is refused whatever its address')
  t.equal(await refused('max_handshakes_per_source'), 1)
  t.equal(await refused('max_handshakes'), 1)
  t.equal(await inProgress(), 5)

  if (!('release' in a1)) throw new Error('unreachable')
  a1.release()
  a1.release()
  t.equal(b.inProgress, 4, 'a release counts once')
  t.ok('release' in b.acquire('10.0.0.1'), 'the freed slot is taken again')
  t.same(b.acquire('10.0.0.9'), { refused: 'max_handshakes' }, 'full again')
  const o = others[0]!
  if (!('release' in o)) throw new Error('unreachable')
  o.release()
  t.same(b.acquire('10.0.0.1'), { refused: 'max_handshakes_per_source' }, 'a slot is free, but not for an address at its own cap')
  t.ok('release' in b.acquire('10.0.0.9'), 'another address takes it')
})

t.test('limits are read at every acquire (a reload applies at once)', async (t) => {
  const { b, limits } = budget(1, 1)
  t.ok('release' in b.acquire('a'))
  t.same(b.acquire('b'), { refused: 'max_handshakes' })
  limits.maxHandshakes = 3
  t.ok('release' in b.acquire('b'))
  t.same(b.acquire('b'), { refused: 'max_handshakes_per_source' })
})
