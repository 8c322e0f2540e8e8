import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdminClientError } from './admin-client.js';
import { HttpError } from './admin.js';
import { ConfigError } from './config/load.js';
import { CbrError, ERROR_CODES, codeForStatus, httpStatusFor } from './errors.js';
import { EXIT, exitCodeFor } from './exit-codes.js';

test('every dataplane error is a CbrError with a stable code', () => {
  assert.equal(new ConfigError(['a: expected a number'], 'f.yaml').code, 'CONFIG_INVALID');
  assert.equal(new HttpError(404, 'no such peer').code, 'NOT_FOUND');
  assert.equal(new HttpError(503, 'down', {}, 'ISSUER_UNAVAILABLE').code, 'ISSUER_UNAVAILABLE');
  // the admin client reads the code the agent's body names, else the status's generic one
  assert.equal(new AdminClientError('refused').code, 'ADMIN_REQUEST_FAILED');
  assert.equal(new AdminClientError('x', 400, { error: 'x', code: 'PREFIX_INVALID' }).code, 'PREFIX_INVALID');
  assert.equal(new AdminClientError('x', 400, { error: 'x', code: 'NOT_A_CODE' }).code, 'INVALID_ARGUMENT');
  assert.equal(new AdminClientError('x', 500, 'plain text').code, 'INTERNAL');
  for (const e of [new ConfigError([], 'f'), new HttpError(400, 'x'), new AdminClientError('x')]) assert.ok(e instanceof CbrError);
});

test('a status maps to a code whose status is the same (for the statuses routes use)', () => {
  for (const s of [400, 401, 403, 404, 405, 409, 413, 429, 502, 503, 504]) assert.equal(httpStatusFor(new CbrError(codeForStatus(s), 'x')), s, String(s));
  assert.equal(codeForStatus(418), 'INVALID_ARGUMENT');
  assert.equal(codeForStatus(599), 'INTERNAL');
});

test('exit statuses: config 78, agent down 69, credentials 77, not found 66, else 1', () => {
  assert.equal(exitCodeFor(new ConfigError(['x'], 'f')), EXIT.CONFIG);
  assert.equal(exitCodeFor(new AdminClientError('refused')), EXIT.UNAVAILABLE);
  assert.equal(exitCodeFor(new AdminClientError('x', 401)), EXIT.NO_PERM);
  assert.equal(exitCodeFor(new AdminClientError('x', 404)), EXIT.NO_INPUT);
  assert.equal(exitCodeFor(Object.assign(new Error('gone'), { code: 'ENOENT' })), EXIT.NO_INPUT);
  assert.equal(exitCodeFor(new Error('plain')), EXIT.FAILURE);
  assert.equal(exitCodeFor('a string'), EXIT.FAILURE);
  // no code exits 0
  for (const c of ERROR_CODES) assert.notEqual(exitCodeFor(new CbrError(c, 'x')), 0, c);
});
