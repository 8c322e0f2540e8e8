// Three agents on one real PostgreSQL (mutual TLS), each in its own namespace with the same
// WireGuard interface and key behind one anycast address, and a stock client (wireguard-go configured
// from the returned wg-quick file, nothing else): a registration at A reaches B's device within a
// second and the client's handshake at B completes; kill -9 of B's wireguard-go costs the client
// about one round trip (B re-initiates the handshake to its last endpoint); with the database away
// the peers keep working (also across an agent restart) and registrations answer 503 with
// Retry-After; a revocation at B removes the peer at A and C.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { uniqueName, waitFor, withTopology } from '../../testhosts/index.js';
import { generatePrivateKey, publicKeyFor } from './keys.js';
import { clientTunnelFromWgQuick, httpIn, pingUntil, tokenFor } from './testing.js';
import { pingGap, TUNNEL_GATEWAY, wgFleet } from './testing-fleet.js';

test('fleet of three PoPs on PostgreSQL: register at A → handshake at B; kill -9 of wireguard-go; database outage; revoke at B → gone at A and C', {
  timeout: 300_000,
}, async () => {
  await withTopology(async (topo) => {
    const dir = mkdtempSync(join(tmpdir(), 'cbr-wgfleet-'));
    try {
      const f = await wgFleet(topo, 3, dir);
      for (let i = 0; i < f.pops.length; i++) await f.start(i);
      const [a, b] = f.pops;
      await f.routeTo(1); // the client's anycast traffic lands on B

      // Register through A; B's device carries the peer within a second.
      const token = await tokenFor(f.core, f.issuer, 'vpn-client', 'vpn-secret');
      const priv = generatePrivateKey();
      const pub = publicKeyFor(priv);
      const reg = await httpIn(f.client, 'POST', `${a!.adminUrl}/v1/wireguard/peers`, { token, body: JSON.stringify({ publicKey: pub }) });
      const t201 = Date.now();
      assert.equal(reg.status, 201, reg.text);
      await waitFor('the peer on B', async () => ((await f.peers(1)).get(pub)?.onDevice ? true : undefined), 5_000, 10);
      const propagationMs = Date.now() - t201;
      console.log(`# propagation: 201 at A → peer on B's device in ${propagationMs} ms`);
      assert.ok(propagationMs <= 1_000, `the peer reached B after ${propagationMs} ms`);
      for (const i of [0, 2]) assert.equal((await f.peers(i)).get(pub)?.onDevice, true, `peer on PoP ${f.pops[i]!.name}`);

      // The stock client, from the wg-quick file only: its handshake completes at B.
      const clientIf = uniqueName('c');
      const tUp = Date.now();
      await clientTunnelFromWgQuick(topo, f.client, clientIf, reg.json.wgQuick, priv, reg.json.allowedIPs);
      assert.ok(await pingUntil(f.client, TUNNEL_GATEWAY, 10_000), 'no ping through the tunnel at B');
      console.log(`# first ping through B ${Date.now() - tUp} ms after the client's tunnel came up (${Date.now() - t201} ms after the 201 at A)`);
      assert.notEqual((await f.peers(1)).get(pub)?.latestHandshakeAgeSeconds, undefined, 'handshake at B');
      assert.equal((await f.peers(0)).get(pub)?.latestHandshakeAgeSeconds, undefined, 'no handshake at A');

      // kill -9 of B's wireguard-go: the supervisor restarts it, and B initiates the handshake to the
      // client's last endpoint (recorded every 2 s) instead of waiting for the client's rekey timer.
      await new Promise((r) => setTimeout(r, 2_500));
      const status = await f.admin(1, 'GET', '/v1/status');
      const child = status.json.children.find((c: { name: string }) => c.name === `wireguard-go:${f.ifname}`);
      assert.ok(child?.pid, JSON.stringify(status.json.children));
      const restart = await pingGap(f.client, TUNNEL_GATEWAY, async () => {
        process.kill(child.pid, 'SIGKILL');
      });
      console.log(`# kill -9 of wireguard-go on B: pings resumed after a gap of ${restart.gapMs} ms (${restart.replies} replies in the 5 s after)`);
      assert.ok(restart.replies > 0, 'pings did not resume after kill -9 of wireguard-go');
      assert.ok(restart.gapMs <= 2_000, `gap ${restart.gapMs} ms after kill -9 of wireguard-go`);
      const metricsOf = (i: number) => f.pops[i]!.ns.exec(['curl', '-s', `${f.pops[i]!.adminUrl}/metrics`]);
      assert.match(await metricsOf(1), new RegExp(`cbr_wireguard_initiated_peers_total\\{interface="${f.ifname}",reason="restart"\\} [1-9]`));

      // B leaves (SIGTERM: it reports that it no longer serves) and anycast moves the client to A: A
      // initiates the handshake to the endpoint B recorded, instead of the client's rekey timer (~15 s).
      let tStop = 0;
      const takeover = await pingGap(f.client, TUNNEL_GATEWAY, async () => {
        tStop = Date.now();
        await Promise.all([b!.agent!.stop('SIGTERM'), f.routeTo(0)]);
      });
      const tookOver = await a!.agent!.waitForLog(
        (e) => e.msg === "took over a gone PoP's clients: initiating handshakes" && Date.parse(String(e.time)) >= tStop,
      );
      const earlier = a!.agent!.logLines.filter((l) => l.includes('took over a gone PoP')).length - 1;
      console.log(
        `# B withdrawn (agent stopped), client routed to A: A initiated ${Date.parse(String(tookOver.time)) - tStop} ms after the SIGTERM (${earlier} earlier takeovers); pings resumed after a gap of ${takeover.gapMs} ms`,
      );
      assert.ok(takeover.replies > 0, 'pings did not resume through A after B left');
      assert.ok(takeover.gapMs <= 2_000, `gap ${takeover.gapMs} ms when A took over B's client`);
      const rx = async (i: number) => {
        const r = await f.admin(i, 'GET', '/v1/wireguard/admin/peers');
        return (r.json.peers as Array<{ publicKey: string; rxBytes?: number }>).find((p) => p.publicKey === pub)?.rxBytes ?? 0;
      };
      const rx0 = await rx(0);
      assert.ok(await pingUntil(f.client, TUNNEL_GATEWAY, 2_000));
      assert.ok((await rx(0)) > rx0, "the client's traffic goes through A");
      assert.match(await metricsOf(0), new RegExp(`cbr_wireguard_initiated_peers_total\\{interface="${f.ifname}",reason="takeover"\\} [1-9]`));
      // B returns and anycast prefers it again: B initiates to the endpoint in its local copy.
      await f.start(1);
      const back = await pingGap(f.client, TUNNEL_GATEWAY, () => f.routeTo(1));
      console.log(`# B back, client routed to B again: gap ${back.gapMs} ms`);
      assert.ok(back.replies > 0, 'pings did not resume through B after its return');

      // PostgreSQL away: B keeps serving its peers, also across an agent restart; registrations answer 503 with Retry-After.
      await f.pg.halt();
      const refused = await f.client.exec(
        [
          'curl',
          '-s',
          '-i',
          '-m',
          '20',
          '-X',
          'POST',
          '-H',
          'content-type: application/json',
          '-H',
          `authorization: Bearer ${token}`,
          '--data-binary',
          '@-',
          `${a!.adminUrl}/v1/wireguard/peers`,
        ],
        { input: JSON.stringify({ publicKey: publicKeyFor(generatePrivateKey()) }), timeoutMs: 30_000 },
      );
      assert.match(refused, /^HTTP\/1\.1 503/, refused);
      assert.match(refused, /^retry-after: \d+/im, refused);
      await f.start(1);
      const afterRestart = await pingGap(f.client, TUNNEL_GATEWAY, async () => undefined, { afterMs: 2_000 });
      assert.ok(afterRestart.replies > 0, 'B lost its peer across an agent restart with the database away');
      await f.pg.resume();
      // B (restarted during the outage) catches up without a restart.
      await waitFor(
        'B back on the database',
        async () => {
          const r = await f.admin(1, 'GET', '/v1/registry');
          return r.json.connected === true && r.json.migrated === true ? true : undefined;
        },
        20_000,
      );

      // Revoke at B: gone at A and C (their local copies and devices) within a second or two.
      const rv = await f.admin(1, 'DELETE', `/v1/wireguard/admin/peers/${encodeURIComponent(pub)}`);
      assert.equal(rv.status, 200, JSON.stringify(rv.json));
      const tRevoke = Date.now();
      for (const i of [0, 2]) {
        await waitFor(`the peer gone from PoP ${f.pops[i]!.name}`, async () => (!(await f.peers(i)).has(pub) ? true : undefined), 15_000, 10);
        // The gauge reads the device over UAPI through a 500 ms cache, so it may trail the local copy.
        const zero = new RegExp(`cbr_wireguard_peers\\{interface="${f.ifname}"\\} 0`);
        await waitFor(
          `PoP ${f.pops[i]!.name}'s device without the peer`,
          async () => (zero.test(await f.pops[i]!.ns.exec(['curl', '-s', `${f.pops[i]!.adminUrl}/metrics`])) ? true : undefined),
          5_000,
          50,
        );
      }
      console.log(`# revoke at B → gone at A and C after ${Date.now() - tRevoke} ms`);
      await f.routeTo(0);
      assert.equal(await f.client.ping(TUNNEL_GATEWAY, { count: 2, timeoutS: 1 }), false, 'the revoked client still reaches A');
      assert.ok(b, 'three PoPs');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
