// End to end with real processes: the agent (auth + tunnel.wireguard) in a PoP namespace, the
// development issuer beside it (`cbr dev-issuer`, so the agent reaches its JWKS inside the
// namespace), a client namespace that gets a token with client_credentials, registers, brings up
// its own wireguard-go from the returned wg-quick file and reaches an origin namespace through it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTopology, uniqueName } from '../../testhosts/index.js';
import { startAgent, runCli, type AgentProcess } from '../../dataplane/testing.js';
import { generatePrivateKey, publicKeyFor } from './keys.js';
import { authSubsystem } from '../../auth/index.js';
import { wgTopology, wgPop, clientTunnelFromWgQuick, pingUntil, iperf3Gbps, waitHealthy, httpIn, tokenFor, ADMIN_TOKEN } from './testing.js';

test('client registers with a dev-issuer token, tunnels to the origin; survives wireguard-go kill -9 and agent restart; expiry and revoke', {
  timeout: 240_000,
  skip: authSubsystem === undefined ? 'needs the auth subsystem and its dev issuer (not in this build yet)' : false,
}, async () => {
  await withTopology(async (topo) => {
    const dir = mkdtempSync(join(tmpdir(), 'cbr-wgint-'));
    let agent: AgentProcess | undefined;
    try {
      const t = await wgTopology(topo, ['10.88.0.0/24', 'fd00:88::/64']);
      const { issuer, ifname, adminUrl, clientUrl, caFile, yaml } = await wgPop(topo, t, dir);
      agent = await startAgent(yaml(), { netns: t.pop.name });
      await waitHealthy(t.pop, adminUrl, agent);
      // Clients register over the client HTTPS listener, verified against the PoP's certificate.
      const peersUrl = `${clientUrl}/v1/wireguard/peers`;
      const client = (method: string, url: string, o: { token?: string; body?: string } = {}) => httpIn(t.client, method, url, { ...o, cacert: caFile });
      // It serves client routes only: no metrics, health or admin API, and no plain HTTP.
      for (const path of ['/metrics', '/healthz', '/v1/status', '/v1/wireguard/admin/peers', '/']) {
        assert.equal((await client('GET', `${clientUrl}${path}`, { token: ADMIN_TOKEN })).status, 404, path);
      }
      const plain = await t.client
        .exec(['curl', '-s', '-m', '5', '-o', '/dev/null', '-w', '%{http_code}', `${clientUrl.replace('https:', 'http:')}/metrics`])
        .catch(() => '000');
      assert.notEqual(plain.trim(), '200', 'plain HTTP must not reach the client listener');
      const cliEnv = { ...process.env, CBR_ADMIN_TOKEN: ADMIN_TOKEN };
      const listPeers = async () => {
        const r = await runCli(['wg', 'peers', '--json', '--admin', adminUrl], { netns: t.pop.name, env: cliEnv });
        assert.equal(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout) as { peers: Array<{ publicKey: string; onDevice: boolean }> }).peers;
      };

      // Bad token → 401, missing role → 403; neither adds a peer.
      const priv = generatePrivateKey();
      const pub = publicKeyFor(priv);
      const body = JSON.stringify({ publicKey: pub });
      assert.equal((await client('POST', peersUrl, { token: 'eyJhbGciOiJSUzI1NiJ9.e30.AAAA', body })).status, 401);
      assert.equal((await client('POST', peersUrl, { body })).status, 401);
      const noRole = await tokenFor(t.client, issuer, 'no-role', 'other-secret');
      assert.equal((await client('POST', peersUrl, { token: noRole, body })).status, 403);
      assert.deepEqual(await listPeers(), []);

      // Malformed key or body → 400 naming the field.
      const token = await tokenFor(t.client, issuer, 'vpn-client', 'vpn-secret');
      const badKey = await client('POST', peersUrl, { token, body: JSON.stringify({ publicKey: 'bm90IGEga2V5' }) });
      assert.equal(badKey.status, 400);
      assert.match(badKey.json.error, /^publicKey:/);
      const badBody = await client('POST', peersUrl, { token, body: '{"publicKey": ' });
      assert.equal(badBody.status, 400);
      assert.match(badBody.json.error, /^body:/);
      assert.deepEqual(await listPeers(), []);

      // Register, bring up the client's own wireguard-go from the wg-quick text, reach the origin.
      const reg = await client('POST', peersUrl, { token, body });
      assert.equal(reg.status, 201, reg.text);
      assert.equal(reg.json.server.endpoint, '192.168.50.1:51820');
      const clientIf = uniqueName('c');
      await clientTunnelFromWgQuick(topo, t.client, clientIf, reg.json.wgQuick, priv, reg.json.allowedIPs);
      assert.ok(await pingUntil(t.client, t.originAddress, 15_000), 'no ping through the tunnel');
      assert.ok(await pingUntil(t.client, 'fd60::2', 10_000), 'no IPv6 ping through the tunnel');

      // Egress policy (tunnel.egress allows only the origin's subnet): the cloud-metadata address
      // behind the PoP and the PoP's own services are refused; the PoP still answers ping.
      await t.origin.exec(['ip', 'addr', 'add', '169.254.169.254/32', 'dev', t.originIf]);
      await t.pop.exec(['ip', 'route', 'add', '169.254.169.254/32', 'via', t.originAddress]);
      const serverPub = /PublicKey\s*=\s*(\S+)/.exec(reg.json.wgQuick)![1]!;
      await t.client.exec(['wg', 'set', clientIf, 'peer', serverPub, 'allowed-ips', [...reg.json.allowedIPs, '169.254.169.254/32'].join(',')]);
      await t.client.exec(['ip', 'route', 'add', '169.254.169.254/32', 'dev', clientIf]);
      assert.equal(await t.client.ping('169.254.169.254', { count: 2, timeoutS: 1 }), false, 'the metadata address is reachable through the tunnel');
      assert.ok(await t.origin.ping('169.254.169.254'), 'the metadata stand-in answers locally');
      assert.ok(await t.client.ping('192.168.60.1'), "the PoP's address answers ping through the tunnel");
      const popTcp = await t.client
        .exec(['bash', '-c', `exec 3<>/dev/tcp/192.168.60.1/${adminUrl.split(':').pop()}`], { timeoutMs: 3000 })
        .then(() => 'open')
        .catch((e: Error) => (/refused/i.test(e.message) ? 'refused' : 'dropped'));
      assert.equal(popTcp, 'dropped', "the PoP's own services are not reachable through the tunnel");
      const metrics = await t.pop.exec(['curl', '-s', `${adminUrl}/metrics`]);
      assert.match(metrics, new RegExp(`cbr_egress_dropped_packets\\{[^}]*interface="${ifname}"[^}]*reason="private"[^}]*\\} [1-9]`));
      const gbps = await iperf3Gbps(topo, t.origin, t.client, t.originAddress, 2);
      assert.ok(gbps > 0.01, `iperf3 through the tunnel: ${gbps} Gbit/s`);
      const me = await client('GET', `${peersUrl}/me`, { token });
      assert.deepEqual(
        me.json.peers.map((p: { publicKey: string }) => p.publicKey),
        [pub],
      );

      // kill -9 of wireguard-go: restarted by the supervisor, peers applied again, traffic resumes without registering again.
      const status = await httpIn(t.pop, 'GET', `${adminUrl}/v1/status`, { token: ADMIN_TOKEN });
      const child = status.json.children.find((c: { name: string }) => c.name === `wireguard-go:${ifname}`);
      assert.ok(child?.pid, JSON.stringify(status.json.children));
      const configuredBefore = agent.logLines.filter((l) => l.includes('interface configured')).length;
      process.kill(child.pid, 'SIGKILL');
      await agent.waitForLog(
        (e) =>
          e.msg === 'interface configured' &&
          e.reason === 'wireguard-go started' &&
          agent!.logLines.filter((l) => l.includes('interface configured')).length > configuredBefore,
        15_000,
      );
      assert.ok(await pingUntil(t.client, t.originAddress, 45_000), 'traffic did not resume after kill -9 of wireguard-go');

      // Agent restart: the peer comes back from SQLite (no new registration), traffic resumes.
      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 0);
      agent = await startAgent(yaml(), { netns: t.pop.name });
      await waitHealthy(t.pop, adminUrl, agent);
      await agent.waitForLog((e) => e.msg === 'interface configured' && e.peers === 1);
      assert.deepEqual(
        (await listPeers()).map((p) => [p.publicKey, p.onDevice]),
        [[pub, true]],
      );
      assert.ok(await pingUntil(t.client, t.originAddress, 45_000), 'traffic did not resume after an agent restart');

      // Expiry: with peerLifetime 8s (SIGHUP reload; long enough for a CLI round trip on a loaded machine), a second device of another user is removed when it expires.
      agent.writeConfig(yaml('    peerLifetime: 8s\n'));
      agent.proc.kill('SIGHUP');
      await agent.waitForLog((e) => e.msg === 'config reloaded');
      const token2 = await tokenFor(t.client, issuer, 'vpn-client-2', 'vpn-secret');
      const pub2 = publicKeyFor(generatePrivateKey());
      assert.equal((await client('POST', peersUrl, { token: token2, body: JSON.stringify({ publicKey: pub2 }) })).status, 201);
      assert.ok((await listPeers()).some((p) => p.publicKey === pub2));
      await agent.waitForLog((e) => e.msg === 'peer expired and removed', 20_000);
      assert.deepEqual(
        (await listPeers()).map((p) => p.publicKey),
        [pub],
      );

      // A pool change that would orphan the lease is refused on reload.
      agent.writeConfig(yaml().replace('pools: [10.88.0.0/24', 'pools: [10.89.0.0/24'));
      agent.proc.kill('SIGHUP');
      await agent.waitForLog((e) => e.msg === 'reload rejected; keeping the running config' && JSON.stringify(e.problems).includes('would orphan'));

      // Revoke through the CLI: the peer is gone and traffic stops.
      const rv = await runCli(['wg', 'revoke', pub, '--admin', adminUrl], { netns: t.pop.name, env: cliEnv });
      assert.equal(rv.code, 0, rv.stderr);
      assert.deepEqual(await listPeers(), []);
      assert.ok(!(await t.client.ping(t.originAddress, { count: 2, timeoutS: 1 })), 'traffic still flows after revoke');
    } finally {
      await agent?.stop('SIGTERM').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
