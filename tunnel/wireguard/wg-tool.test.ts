import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeWgDump, encodeWgConf, wgSetArgs } from './wg-tool.js';
import { UapiError } from './uapi.js';

const A = Buffer.alloc(32, 7).toString('base64');
const B = Buffer.alloc(32, 9).toString('base64');

test('decodeWgDump reads `wg show <if> dump`', () => {
  const s = decodeWgDump(`${A}\t${B}\t51820\toff\n${B}\t(none)\t192.0.2.1:4000\t10.0.0.2/32,fd00::2/128\t1700000000\t10\t20\t25\n${A}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n`);
  assert.equal(s.privateKey, A);
  assert.equal(s.listenPort, 51820);
  assert.equal(s.fwmark, undefined);
  assert.deepEqual(s.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps, p.lastHandshakeTimeSec, p.rxBytes, p.txBytes, p.persistentKeepaliveInterval]), [
    [B, '192.0.2.1:4000', ['10.0.0.2/32', 'fd00::2/128'], 1700000000, 10, 20, 25],
    [A, undefined, [], 0, 0, 0, 0],
  ]);
});

test('wg set / setconf arguments', () => {
  assert.deepEqual(wgSetArgs('wg0', { peers: [{ publicKey: A, allowedIps: ['10.0.0.2/32'] }, { publicKey: B, remove: true }] }), ['set', 'wg0', 'peer', A, 'allowed-ips', '10.0.0.2/32', 'peer', B, 'remove']);
  assert.match(encodeWgConf({ privateKey: A, listenPort: 1, replacePeers: true, peers: [{ publicKey: B, allowedIps: ['10.0.0.2/32', 'fd00::2/128'] }] }), /\[Peer\]\nPublicKey = .*\nAllowedIPs = 10\.0\.0\.2\/32, fd00::2\/128/);
});

test('property: random text never makes decodeWgDump throw anything but UapiError', () => {
  const piece = fc.constantFrom('\t', '\n', '(none)', 'off', '0', '51820', A, '10.0.0.1/32', ',', 'x');
  fc.assert(fc.property(fc.oneof(fc.string(), fc.array(piece, { maxLength: 30 }).map((a) => a.join(''))), (t) => {
    try {
      decodeWgDump(t);
    } catch (err) {
      assert.ok(err instanceof UapiError, String(err));
    }
  }), { numRuns: 2000 });
});
