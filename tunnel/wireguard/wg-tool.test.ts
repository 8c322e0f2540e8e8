import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, readdirSync, rmSync, watch } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeWgDump, encodeWgConf, wgSetArgs, WgToolControl } from './wg-tool.js';
import { UapiError } from './uapi.js';
import { UapiClient, uapiSocketPath } from './uapi-client.js';
import { withTopology, uniqueName } from '../../testhosts/index.js';
import { startWireguardGo } from './testing.js';
import { generatePrivateKey, publicKeyFor } from './keys.js';

const A = Buffer.alloc(32, 7).toString('base64');
const B = Buffer.alloc(32, 9).toString('base64');

test('decodeWgDump reads `wg show <if> dump`', () => {
  const s = decodeWgDump(
    `${A}\t${B}\t51820\toff\n${B}\t(none)\t192.0.2.1:4000\t10.0.0.2/32,fd00::2/128\t1700000000\t10\t20\t25\n${A}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n`,
  );
  assert.equal(s.privateKey, A);
  assert.equal(s.listenPort, 51820);
  assert.equal(s.fwmark, undefined);
  assert.deepEqual(
    s.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIps, p.lastHandshakeTimeSec, p.rxBytes, p.txBytes, p.persistentKeepaliveInterval]),
    [
      [B, '192.0.2.1:4000', ['10.0.0.2/32', 'fd00::2/128'], 1700000000, 10, 20, 25],
      [A, undefined, [], 0, 0, 0, 0],
    ],
  );
});

test('wg set / setconf arguments', () => {
  assert.deepEqual(
    wgSetArgs('wg0', {
      peers: [
        { publicKey: A, allowedIps: ['10.0.0.2/32'] },
        { publicKey: B, remove: true },
      ],
    }),
    ['set', 'wg0', 'peer', A, 'allowed-ips', '10.0.0.2/32', 'peer', B, 'remove'],
  );
  assert.match(
    encodeWgConf({ privateKey: A, listenPort: 1, replacePeers: true, peers: [{ publicKey: B, allowedIps: ['10.0.0.2/32', 'fd00::2/128'] }] }),
    /\[Peer\]\nPublicKey = .*\nAllowedIPs = 10\.0\.0\.2\/32, fd00::2\/128/,
  );
});

test('property: random text never makes decodeWgDump throw anything but UapiError', () => {
  const piece = fc.constantFrom('\t', '\n', '(none)', 'off', '0', '51820', A, '10.0.0.1/32', ',', 'x');
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.array(piece, { maxLength: 30 }).map((a) => a.join('')),
      ),
      (t) => {
        try {
          decodeWgDump(t);
        } catch (err) {
          assert.ok(err instanceof UapiError, String(err));
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('WgToolControl (the kernel path) configures and reads a real device through `wg` (here: wireguard-go)', async (t) => {
  // Stands for the agent's state directory (test-owned, 0700).
  const secretDir = mkdtempSync(join(tmpdir(), 'cbr-wgtool-state-'));
  t.after(() => rmSync(secretDir, { recursive: true, force: true }));
  await withTopology(async (topo) => {
    const ns = await topo.namespace('wgtool');
    const ifname = uniqueName('w');
    await startWireguardGo(topo, ns, ifname);
    // The private key goes to the agent's own directory while `wg` reads it, never to the shared /tmp.
    const created: string[] = [];
    const inTmp = watch(tmpdir(), (_, name) => name && created.push(`tmp:${name}`));
    const inState = watch(secretDir, (_, name) => name && created.push(`state:${name}`));
    const ctl = new WgToolControl(ifname, secretDir);
    const priv = generatePrivateKey();
    const [p1, p2] = [publicKeyFor(generatePrivateKey()), publicKeyFor(generatePrivateKey())];
    await ctl.set({
      privateKey: priv,
      listenPort: 40123,
      replacePeers: true,
      peers: [
        { publicKey: p1, allowedIps: ['10.5.0.2/32'] },
        { publicKey: p2, allowedIps: ['10.5.0.3/32', 'fd00:5::3/128'] },
      ],
    });
    await ctl.set({
      peers: [
        { publicKey: p1, remove: true },
        { publicKey: p2, allowedIps: ['10.5.0.4/32'] },
      ],
    });
    await ctl.set({ privateKey: generatePrivateKey() });
    await ctl.set({ privateKey: priv });
    await new Promise((r) => setTimeout(r, 50));
    inTmp.close();
    inState.close();
    assert.ok(!created.some((n) => n.startsWith('tmp:cbr-wg')), `files in ${tmpdir()}: ${created.join(' ')}`);
    assert.ok(
      created.some((n) => n.startsWith('state:.wg-')),
      created.join(' '),
    );
    assert.deepEqual(readdirSync(secretDir), [], 'the secret file is removed after use');
    const viaWg = await ctl.get();
    const viaUapi = await new UapiClient(uapiSocketPath(ifname)).get();
    assert.equal(viaWg.privateKey, priv);
    assert.equal(viaWg.listenPort, 40123);
    assert.deepEqual(
      viaWg.peers.map((p) => [p.publicKey, p.allowedIps]),
      [[p2, ['10.5.0.4/32']]],
    );
    assert.deepEqual(
      viaUapi.peers.map((p) => [p.publicKey, p.allowedIps]),
      [[p2, ['10.5.0.4/32']]],
    );
    await assert.rejects(new WgToolControl('cbr-nonexist0', secretDir).get(), UapiError);
  });
});
