import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../testhosts/index.js';
import { startAgent } from '../dataplane/testing.js';
import { postgresStore, registration, withPostgres } from './testing.js';

interface Healthz {
  state: string;
  degraded: boolean;
  checks: Array<{ name: string; healthy: boolean; critical: boolean; lastError?: string }>;
}

const OFF =
  'auth: { enabled: false }\nxdp: { enabled: false }\ntunnel:\n  masque: { enabled: false }\n  wireguard: { enabled: false }\nbgp: { enabled: false }\n';

test('agent with the registry on PostgreSQL: migrates, follows the feed, degraded (not down) while the database is away', async () => {
  await withPostgres(async (h) => {
    const role = h.roles[0]!;
    const yaml = `${OFF}registry:\n  postgres:\n    url: "${h.url(role)}&target_session_attrs=read-write"\n    passwordFile: ${h.passwordFile(role)}\n    catchUpInterval: 1s\n`;
    const agent = await startAgent(yaml);
    const primary = postgresStore(h);
    try {
      const healthz = async () => {
        const res = await fetch(`${agent.adminUrl}/healthz`);
        return { status: res.status, body: (await res.json()) as Healthz };
      };
      const registryCheck = (b: Healthz) => b.checks.find((c) => c.name === 'registry');
      await waitFor(
        'the registry check to pass',
        async () => ((await healthz()).body.degraded === false && registryCheck((await healthz()).body)?.healthy ? true : undefined),
        15_000,
      );
      // The agent migrated the database: a store can register at once.
      const r = await primary.register(registration('alice'));
      const applied = async () => Number(/^cbr_registry_last_applied_change\S* (\d+)/m.exec(await (await fetch(`${agent.adminUrl}/metrics`)).text())?.[1]);
      await waitFor('the agent to apply the change', async () => ((await applied()) === r.seq ? true : undefined), 5000, 50);
      const status = (await (await fetch(`${agent.adminUrl}/v1/registry`)).json()) as Record<string, unknown>;
      assert.deepEqual(status, { backend: 'postgres', connected: true, migrated: true, lastApplied: r.seq, lagSeconds: 0 });
      await h.halt();
      const down = await waitFor(
        'the registry check to fail',
        async () => {
          const s = await healthz();
          return registryCheck(s.body)?.healthy === false ? s : undefined;
        },
        15_000,
      );
      assert.equal(down.status, 200, 'the PoP stays up (anycast stays announced)');
      assert.equal(down.body.state, 'up');
      assert.equal(down.body.degraded, true);
      assert.match(registryCheck(down.body)?.lastError ?? '', /unreachable; serving 1 applied changes from the local copy/);
      await h.resume();
      await waitFor('the registry check to pass again', async () => (registryCheck((await healthz()).body)?.healthy ? true : undefined), 15_000);
      const r2 = await primary.register(registration('bob'));
      await waitFor('the agent to apply the change after the outage', async () => ((await applied()) === r2.seq ? true : undefined), 5000, 50);
    } finally {
      await primary.close();
      await agent.stop();
    }
  });
});
