import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger, scrubSecrets } from './log.js';

function capture() {
  const lines: string[] = [];
  const dest = new Writable({
    write: (c, _e, cb) => {
      lines.push(...String(c).split('\n').filter(Boolean));
      cb();
    },
  });
  return { lines, log: createLogger('debug', dest) };
}

const JWT = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXZhbHVl';

test('authorization headers, tokens and private keys are redacted in objects', () => {
  const { lines, log } = capture();
  log.child({ subsystem: 'x' }).info(
    {
      headers: { authorization: `Bearer ${JWT}` },
      req: { headers: { authorization: 'Bearer abc' } },
      token: JWT,
      privateKey: '-----BEGIN PRIVATE KEY-----MIIE',
      peer: { privateKey: 'aGVsbG8=', publicKey: 'cHVibGlj' },
      clientSecret: 'hunter2',
    },
    'hello',
  );
  const text = lines.join('\n');
  assert.doesNotMatch(text, /eyJhbGci|Bearer abc|BEGIN PRIVATE|aGVsbG8=|hunter2/);
  const entry = JSON.parse(lines[0]!);
  assert.equal(entry.token, '[Redacted]');
  assert.equal(entry.peer.publicKey, 'cHVibGlj', 'public keys stay visible');
  assert.equal(entry.subsystem, 'x');
  assert.equal(entry.level, 'info');
});

test('tokens inside messages and errors are scrubbed', () => {
  const { lines, log } = capture();
  log.warn(`rejected Authorization: Bearer ${JWT} from 192.0.2.1`);
  log.error({ err: new Error(`bad token ${JWT}`) }, 'verify failed');
  const text = lines.join('\n');
  assert.doesNotMatch(text, /eyJhbGci/);
  assert.match(text, /192\.0\.2\.1/);
  assert.equal(scrubSecrets('Bearer abc.def'), 'Bearer [Redacted]');
});
