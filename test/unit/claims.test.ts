import t from 'tap'
import { claimMatches, getClaim, selectClaims } from '../../src/identity/claims.js'

const k8s = {
  iss: 'https://kubernetes.default.svc',
  sub: 'system:serviceaccount:billing:api',
  'kubernetes.io': {
    namespace: 'billing',
    serviceaccount: { name: 'api', uid: 'u-1' },
    pod: { name: 'api-7d9', uid: 'p-1' },
  },
  groups: ['dev', 'dba'],
  team: 'payments',
  admin: false,
  level: 3,
}

t.test('getClaim: plain top-level claims', async (t) => {
  t.equal(getClaim(k8s, 'team'), 'payments')
  t.same(getClaim(k8s, 'groups'), ['dev', 'dba'])
  t.equal(getClaim(k8s, 'admin'), false, 'false is a value, not "missing"')
  t.equal(getClaim(k8s, 'level'), 3)
  t.equal(getClaim(k8s, 'missing'), undefined)
})

t.test('getClaim: dotted paths through a claim name that itself contains a dot', async (t) => {
  t.equal(getClaim(k8s, 'kubernetes.io.namespace'), 'billing')
  t.equal(getClaim(k8s, 'kubernetes.io.serviceaccount.name'), 'api')
  t.equal(getClaim(k8s, 'kubernetes.io.pod.uid'), 'p-1')
  t.same(getClaim(k8s, 'kubernetes.io'), k8s['kubernetes.io'], 'the dotted key itself')
  t.equal(getClaim(k8s, 'kubernetes.io.nope'), undefined)
  t.equal(getClaim(k8s, 'kubernetes.namespace'), undefined, 'no "kubernetes" key')
  t.equal(getClaim(k8s, 'kubernetes'), undefined)
})

t.test('getClaim: nested objects with plain keys', async (t) => {
  const p = { a: { b: { c: 3 } }, x: { 'y.z': 'dotted-inner' } }
  t.equal(getClaim(p, 'a.b.c'), 3)
  t.same(getClaim(p, 'a.b'), { c: 3 })
  t.equal(getClaim(p, 'x.y.z'), 'dotted-inner', 'dotted key below the top level')
  t.equal(getClaim(p, 'a.b.c.d'), undefined, 'path through a number')
  t.equal(getClaim(p, 'a..b'), undefined, 'empty path segment')
})

t.test('getClaim: the exact key wins over a nested path; longest prefix first; falls back', async (t) => {
  t.equal(getClaim({ 'a.b': 1, a: { b: 2 } }, 'a.b'), 1, 'exact key')
  t.equal(
    getClaim({ 'a.b': { c: 'long' }, a: { b: { c: 'short' } } }, 'a.b.c'),
    'long',
    'longest matching prefix wins',
  )
  t.equal(
    getClaim({ 'a.b': { other: 1 }, a: { b: { c: 'short' } } }, 'a.b.c'),
    'short',
    'a longer prefix that does not lead anywhere falls back to the shorter one',
  )
})

t.test('getClaim: non-objects and prototype names', async (t) => {
  t.equal(getClaim(null, 'a'), undefined)
  t.equal(getClaim(undefined, 'a'), undefined)
  t.equal(getClaim('str', 'length'), undefined)
  t.equal(getClaim(42, 'a'), undefined)
  t.equal(getClaim({}, 'toString'), undefined, 'inherited properties are not claims')
  t.equal(getClaim({}, 'constructor'), undefined)
  t.equal(getClaim({}, '__proto__'), undefined)
  t.equal(getClaim({ a: {} }, 'a.hasOwnProperty'), undefined)
  const withProto = JSON.parse('{"__proto__": {"evil": 1}}') as Record<string, unknown>
  t.same(getClaim(withProto, '__proto__'), { evil: 1 }, 'an own "__proto__" key from JSON is a claim like any other')
  t.equal(getClaim({}, 'evil'), undefined)
})

t.test('selectClaims keeps only configured, present claims keyed by the configured path', async (t) => {
  const sel = selectClaims(k8s, ['team', 'kubernetes.io.namespace', 'kubernetes.io.serviceaccount.name', 'groups', 'absent', 'admin'])
  t.same(sel, {
    team: 'payments',
    'kubernetes.io.namespace': 'billing',
    'kubernetes.io.serviceaccount.name': 'api',
    groups: ['dev', 'dba'],
    admin: false,
  })
  t.notOk('absent' in sel, 'missing claims are omitted, not null')
  t.same(selectClaims(k8s, []), {}, 'nothing configured: nothing recorded')
  t.notOk('sub' in selectClaims(k8s, ['team']), 'never the whole token')
})

t.test('claimMatches: equality, and "contains" on arrays', async (t) => {
  t.ok(claimMatches('dba', 'dba'))
  t.notOk(claimMatches('DBA', 'dba'), 'case-sensitive')
  t.notOk(claimMatches('dba ', 'dba'))
  t.ok(claimMatches(['dev', 'dba'], 'dba'), 'array contains')
  t.notOk(claimMatches(['dev', 'ops'], 'dba'))
  t.notOk(claimMatches([], 'dba'))
  t.notOk(claimMatches([['dba']], 'dba'), 'nested arrays are not flattened')
  t.notOk(claimMatches('dev dba', 'dba'), 'no substring / space-separated match')
  t.ok(claimMatches(3, 3))
  t.notOk(claimMatches('3', 3), 'no type coercion (string vs number)')
  t.notOk(claimMatches(3, '3'), 'no type coercion (number vs string)')
  t.ok(claimMatches(true, true))
  t.notOk(claimMatches('true', true))
  t.notOk(claimMatches(1, true))
  t.notOk(claimMatches(undefined, 'x'))
  t.notOk(claimMatches(null, 'null'))
  t.notOk(claimMatches({ dba: true }, 'dba'), 'an object is not "contains"')
  t.ok(claimMatches([1, 2, 3], 2))
  t.notOk(claimMatches(['2'], 2))
  t.ok(claimMatches(getClaim(k8s, 'kubernetes.io.namespace'), 'billing'), 'composes with getClaim')
})
