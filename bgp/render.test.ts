import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../dataplane/index.js';
import { configLoader } from '../agent/config/schema.js';

const validateConfig = (raw: unknown) => configLoader.validate(raw);
import { renderBirdConfig, redactPasswords, type AnnounceState } from './render.js';
import { checkBirdConfig, readPasswords } from './birdconf.js';
import { isNetworkAddress } from './config.js';

const base = {
  enabled: true,
  routerId: '10.0.0.1',
  localAs: 65001,
  prefixes: ['198.51.100.1/32', '2001:db8:100::/48'],
  peers: [
    { name: 'up1', address: '10.0.0.2', remoteAs: 65000, bfd: true },
    { name: 'up6', address: '2001:db8::2', remoteAs: 65000, multihop: 2, sourceAddress: '2001:db8::1' },
  ],
  drain: { prepend: 2 },
};

function bgpConfig(over: Record<string, unknown> = {}) {
  return validateConfig({ bgp: { ...base, ...over } }).bgp;
}

function problems(bgp: Record<string, unknown>): string[] {
  try {
    validateConfig({ bgp });
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

test('schema: required fields and cross-field rules name the field', () => {
  assert.deepEqual(problems({ enabled: false }), []);
  const p = problems({ enabled: true });
  for (const field of ['bgp.routerId', 'bgp.localAs', 'bgp.prefixes', 'bgp.peers'])
    assert.ok(
      p.some((x) => x.startsWith(field)),
      `${field} in ${p.join(' | ')}`,
    );
  assert.ok(problems({ ...base, prefixes: ['198.51.100.1/24'] }).some((x) => x.startsWith('bgp.prefixes[0]') && x.includes('network address')));
  assert.ok(problems({ ...base, timers: { hold: '2s' } }).some((x) => x.startsWith('bgp.timers.hold')));
  assert.ok(problems({ ...base, timers: { hold: '1500ms' } }).some((x) => x.startsWith('bgp.timers.hold') && x.includes('whole seconds')));
  assert.ok(problems({ ...base, timers: { keepalive: '9s' } }).some((x) => x.startsWith('bgp.timers.keepalive')));
  assert.ok(problems({ ...base, peers: [base.peers[0], base.peers[0]] }).some((x) => x.startsWith('bgp.peers[1].name')));
  assert.ok(problems({ ...base, prefixes: ['198.51.100.1/32'], peers: [base.peers[1]] }).some((x) => x.startsWith('bgp.peers[0].address')));
  assert.ok(problems({ ...base, localAs: 0 }).some((x) => x.startsWith('bgp.localAs')));
  assert.ok(problems({ ...base, bogus: 1 }).length > 0);
});

test('isNetworkAddress', () => {
  assert.equal(isNetworkAddress('198.51.100.0/24'), true);
  assert.equal(isNetworkAddress('198.51.100.1/24'), false);
  assert.equal(isNetworkAddress('2001:db8::/32'), true);
  assert.equal(isNetworkAddress('2001:db8::1/32'), false);
  assert.equal(isNetworkAddress('::/0'), true);
});

test('render: filters carry the state; import none; only the anycast prefixes are exported', () => {
  const c = bgpConfig();
  const announce = renderBirdConfig({ config: c, state: 'announce' });
  assert.match(announce, /define CBR_ANYCAST4 = \[ 198\.51\.100\.1\/32 \];/);
  assert.match(announce, /define CBR_ANYCAST6 = \[ 2001:db8:100::\/48 \];/);
  assert.match(announce, /import none;/);
  assert.match(announce, /export filter cbr_export4;/);
  assert.doesNotMatch(announce, /65535/);
  assert.doesNotMatch(announce, /password/);
  const drain = renderBirdConfig({ config: c, state: 'drain' });
  assert.match(drain, /bgp_community\.add\(\(65535, 0\)\);/);
  assert.equal(drain.match(/bgp_path\.prepend\(65001\)/g)?.length, 4); // 2 prepends x 2 families
  const withdraw = renderBirdConfig({ config: c, state: 'withdraw' });
  assert.match(withdraw, /reject;\n {2}reject;\n\}/);
  assert.doesNotMatch(withdraw, /accept/);
  assert.match(announce, /protocol bfd cbr_bfd/);
  assert.match(announce, /neighbor 2001:db8::2 as 65000;\n {2}multihop 2;/);
  assert.match(announce, /local 2001:db8::1 as 65001;/);
});

test('render: every state and option is accepted by `bird -p`; a BIRD-invalid config is refused with its message', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-bgp-render-'));
  try {
    const pwFile = join(dir, 'pw');
    writeFileSync(pwFile, 's3cret-pass\nignored second line\n');
    const c = bgpConfig({ peers: [{ ...base.peers[0], passwordFile: pwFile }, base.peers[1]] });
    const passwords = readPasswords(c);
    assert.deepEqual(passwords, { up1: 's3cret-pass' });
    for (const state of ['announce', 'drain', 'withdraw'] as AnnounceState[]) {
      const text = renderBirdConfig({ config: c, state, passwords });
      const file = join(dir, `${state}.conf`);
      writeFileSync(file, text);
      await checkBirdConfig('bird', file);
      if (state === 'announce') {
        assert.match(text, /password "s3cret-pass";/);
        assert.match(redactPasswords(text), /password "\*\*\*\*\*\*\*\*";/);
        assert.doesNotMatch(redactPasswords(text), /s3cret/);
      }
    }
    // Valid for the schema, refused by BIRD: a link-local neighbor needs an interface.
    const bad = bgpConfig({ peers: [{ name: 'll', address: 'fe80::1', remoteAs: 65000 }] });
    const file = join(dir, 'bad.conf');
    writeFileSync(file, renderBirdConfig({ config: bad, state: 'announce' }));
    await assert.rejects(checkBirdConfig('bird', file), /BIRD refuses the rendered config: .*/);
    await assert.rejects(checkBirdConfig('/nonexistent/bird', file), /bgp\.bird\.binary: cannot run/);
    // Password file problems name the field.
    writeFileSync(pwFile, 'has"quote\n');
    assert.throws(() => readPasswords(c), /bgp\.peers\[0\]\.passwordFile: the password may not contain/);
    assert.throws(
      () => readPasswords(bgpConfig({ peers: [{ ...base.peers[0], passwordFile: join(dir, 'missing') }] })),
      /bgp\.peers\[0\]\.passwordFile: cannot read .*ENOENT/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
