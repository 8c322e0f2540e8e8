import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkClaims, parseClaimsJson, extractRoles, requireAnyRole, ZITADEL_ROLES_CLAIM, ZITADEL_ORG_CLAIM, projectRolesClaim } from './claims.js';
import { AuthError } from './gate.js';

const rules = { issuer: 'https://idp.example', audience: ['p1', 'client-9'], clockSkewSeconds: 30 };
const trustingGeneric = { ...rules, trustGenericRoleClaim: true };
const now = 1_700_000_000;
const base = (over: Record<string, unknown> = {}) => ({
  iss: 'https://idp.example',
  aud: ['p1', 'x@p1'],
  sub: 'u1',
  exp: now + 600,
  iat: now,
  nbf: now,
  ...over,
});
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof AuthError, `expected AuthError, got ${err}`);
    return err.code;
  }
  return 'none';
};

test('identity from the project-scoped role claim, and from the generic one only when trusted', () => {
  const grants = { 'vpn-user': { org1: 'org1.example' } };
  const a = checkClaims(base({ [ZITADEL_ROLES_CLAIM]: grants, [ZITADEL_ORG_CLAIM]: 'org1', client_id: 'x@p1' }), trustingGeneric, now);
  assert.deepEqual(a, { subject: 'u1', roles: ['vpn-user'], expiresAt: now + 600, org: 'org1', clientId: 'x@p1' });
  const b = checkClaims(base({ [projectRolesClaim('p1')]: { admin: { org1: 'd' } } }), rules, now);
  assert.deepEqual(b.roles, ['admin']);
  // Both shapes together merge; roles of a project outside the audience do not count.
  const c = checkClaims(
    base({ [ZITADEL_ROLES_CLAIM]: grants, [projectRolesClaim('p1')]: { admin: { o: 'd' } }, [projectRolesClaim('other')]: { root: { o: 'd' } } }),
    trustingGeneric,
    now,
  );
  assert.deepEqual(c.roles, ['admin', 'vpn-user']);
  assert.equal(checkClaims(base({ aud: 'client-9', azp: 'c' }), rules, now).clientId, 'c');
});

test("by default the generic role claim does not count: a token for another project's client carries that project's roles there", () => {
  // Zitadel asserts urn:zitadel:iam:org:project:roles for the project of the client that requested the
  // token; a client of project "other" that asks for our project in aud gets its own project's roles.
  const foreign = base({ aud: ['other', 'p1'], client_id: 'c@other', [ZITADEL_ROLES_CLAIM]: { 'vpn-user': { o: 'd' }, admin: { o: 'd' } } });
  const id = checkClaims(foreign, rules, now);
  assert.deepEqual(id.roles, []);
  assert.equal(
    code(() => requireAnyRole(id, ['vpn-user'], 'connect-ip')),
    'MISSING_ROLE',
  );
  assert.deepEqual(checkClaims(foreign, trustingGeneric, now).roles, ['admin', 'vpn-user'], 'only with the opt-in');
  // Ignored means ignored: a malformed generic claim does not fail a token that does not rely on it.
  assert.deepEqual(checkClaims(base({ [ZITADEL_ROLES_CLAIM]: ['x'], [projectRolesClaim('p1')]: { admin: { o: 'd' } } }), rules, now).roles, ['admin']);
});

test('each failed check has its code', () => {
  assert.equal(
    code(() => checkClaims(base({ iss: 'https://idp.example/' }), rules, now)),
    'WRONG_ISSUER',
  );
  assert.equal(
    code(() => checkClaims(base({ aud: ['p2'] }), rules, now)),
    'WRONG_AUDIENCE',
  );
  assert.equal(
    code(() => checkClaims(base({ aud: undefined }), rules, now)),
    'WRONG_AUDIENCE',
  );
  assert.equal(
    code(() => checkClaims(base({ aud: 7 }), rules, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ exp: now - 31 }), rules, now)),
    'EXPIRED',
  );
  assert.equal(
    code(() => checkClaims(base({ exp: now - 29 }), rules, now)),
    'none',
    'within the clock skew',
  );
  assert.equal(
    code(() => checkClaims(base({ exp: undefined }), rules, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ exp: '1' }), rules, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ nbf: now + 31 }), rules, now)),
    'NOT_YET_VALID',
  );
  assert.equal(
    code(() => checkClaims(base({ nbf: now + 29 }), rules, now)),
    'none',
  );
  assert.equal(
    code(() => checkClaims(base({ iat: now + 120 }), rules, now)),
    'NOT_YET_VALID',
  );
  assert.equal(
    code(() => checkClaims(base({ sub: '' }), rules, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ [ZITADEL_ROLES_CLAIM]: ['admin'] }), trustingGeneric, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ [ZITADEL_ROLES_CLAIM]: { admin: true } }), trustingGeneric, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => checkClaims(base({ [ZITADEL_ORG_CLAIM]: 5 }), rules, now)),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => parseClaimsJson('[1]')),
    'INVALID_TOKEN',
  );
  assert.equal(
    code(() => parseClaimsJson('{')),
    'INVALID_TOKEN',
  );
  const id = checkClaims(base(), rules, now);
  assert.equal(
    code(() => requireAnyRole(id, ['admin'], 'admin')),
    'MISSING_ROLE',
  );
});

test('property: any JSON payload yields an identity or an AuthError, nothing else', () => {
  const claimKeys = fc.constantFrom(
    'iss',
    'aud',
    'sub',
    'exp',
    'nbf',
    'iat',
    'client_id',
    'azp',
    ZITADEL_ROLES_CLAIM,
    projectRolesClaim('p1'),
    ZITADEL_ORG_CLAIM,
    '__proto__',
    'constructor',
  );
  const claimValue = fc.oneof(
    fc.jsonValue(),
    fc.constantFrom('https://idp.example', 'p1', now, now + 100, now - 100),
    fc.dictionary(fc.string(), fc.jsonValue()),
  );
  const payload = fc.oneof(fc.jsonValue(), fc.dictionary(claimKeys, claimValue), fc.dictionary(fc.string(), fc.jsonValue()));
  fc.assert(
    fc.property(payload, fc.boolean(), (p, asBytes) => {
      const text = JSON.stringify(p) ?? 'null';
      try {
        const claims = parseClaimsJson(asBytes ? new TextEncoder().encode(text) : text);
        const id = checkClaims(claims, rules, now);
        assert.equal(typeof id.subject, 'string');
        assert.ok(Array.isArray(id.roles));
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        parseClaimsJson(s);
      } catch (err) {
        if (!(err instanceof AuthError)) throw err;
      }
    }),
    { numRuns: 1000 },
  );
});

test('property: roles are exactly the keys of well-formed role claims', () => {
  fc.assert(
    fc.property(fc.uniqueArray(fc.string({ minLength: 1 }), { maxLength: 6 }), (roles) => {
      const claim = Object.fromEntries(roles.map((r) => [r, { o: 'd' }]));
      assert.deepEqual(extractRoles({ [ZITADEL_ROLES_CLAIM]: claim }, ['p1'], true), [...roles].sort());
    }),
  );
});
