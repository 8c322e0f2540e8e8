import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent, runCli } from '../dataplane/testing.js';
import { EXIT } from '../dataplane/index.js';
import { startDevIssuer } from './dev-issuer.js';

test('agent with auth: JWKS health check, admin API through the admin role, metrics, no token in logs', async () => {
  const dev = await startDevIssuer({ projectId: 'proj1' });
  const agent = await startAgent(`auth:\n  enabled: true\n  issuer: ${dev.url}\n  audience: [proj1]\n  policy:\n    admin: [pop-admin]\n`);
  try {
    let health: { checks?: Array<{ name: string; healthy: boolean }> } = {};
    for (let i = 0; i < 50; i++) {
      health = (await (await fetch(`${agent.adminUrl}/healthz`)).json()) as typeof health;
      if (health.checks?.find((c) => c.name === 'auth.jwks')?.healthy) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(health.checks?.find((c) => c.name === 'auth.jwks')?.healthy, true, JSON.stringify(health));

    const status = (token?: string) => fetch(`${agent.adminUrl}/v1/status`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    const admin = await dev.mint({ roles: ['pop-admin'] });
    assert.equal((await status(admin)).status, 200);
    const user = await status(await dev.mint({ roles: ['vpn-user'] }));
    assert.equal(user.status, 403);
    assert.equal(((await user.json()) as { code?: string }).code, 'MISSING_ROLE');
    assert.equal((await status(await dev.mint({ roles: ['pop-admin'], expiresIn: -300 }))).status, 401);
    assert.equal((await status()).status, 401);

    const st = await runCli(['auth', 'status', '--refresh', '--admin', agent.adminUrl], { env: { ...process.env, CBR_ADMIN_TOKEN: admin } });
    assert.equal(st.code, 0, st.stderr);
    const view = JSON.parse(st.stdout);
    assert.equal(view.issuer, dev.url);
    assert.equal(view.keys.usable, true);
    assert.equal(view.keys.jwksUri, `${dev.url}/oauth/v2/keys`);
    const denied = await runCli(['auth', 'status', '--admin', agent.adminUrl], { env: { ...process.env, CBR_ADMIN_TOKEN: 'not-a-token' } });
    assert.equal(denied.code, EXIT.NO_PERM);
    assert.match(denied.stderr, /401/);

    const metrics = await (await fetch(`${agent.adminUrl}/metrics`)).text();
    assert.match(metrics, /cbr_auth_verifications_total\{result="ok"\} 3/);
    assert.match(metrics, /cbr_auth_verifications_total\{result="MISSING_ROLE"\} 1/);
    assert.match(metrics, /cbr_auth_verify_duration_seconds_bucket/);
    assert.match(metrics, /cbr_auth_jwks_keys 2/);

    // SIGHUP: a new admin policy applies to the running gate; a config it cannot use is refused.
    const yaml = (extra: string) =>
      `admin:\n  listen: ${agent.adminUrl.replace('http://', '')}\nagent:\n  stateDir: ${agent.dir}/state\nauth:\n  enabled: true\n  issuer: ${dev.url}\n  audience: [proj1]\n${extra}`;
    agent.writeConfig(yaml('  policy:\n    admin: [ops]\n'));
    agent.proc.kill('SIGHUP');
    await agent.waitForLog((e) => e.msg === 'config reloaded');
    assert.equal((await status(admin)).status, 403);
    assert.equal((await status(await dev.mint({ roles: ['ops'] }))).status, 200);
    agent.writeConfig(yaml(`  introspection:\n    mode: introspect-always\n    keyFile: ${agent.dir}/missing.json\n`));
    agent.proc.kill('SIGHUP');
    const rejected = await agent.waitForLog((e) => String(e.msg).startsWith('reload rejected'));
    assert.match(JSON.stringify(rejected.problems), /auth\.introspection\.keyFile: cannot read/);
    const ops = await dev.mint({ roles: ['ops'] });
    assert.equal((await status(ops)).status, 200);

    // Issuer gone: the admin API still works with cached keys; the health check stays up until maxAge.
    await dev.close();
    assert.equal((await status(await dev.mint({ roles: ['ops'] }))).status, 200);
    assert.ok(!agent.logLines.some((l) => l.includes(admin.split('.')[2]!) || l.includes(ops.split('.')[2]!)), 'token signature never logged');

    // Auth switched off by a reload: its routes and the admin authorizer go with it.
    assert.equal((await fetch(`${agent.adminUrl}/v1/auth`, { headers: { authorization: `Bearer ${ops}` } })).status, 200);
    agent.writeConfig(`admin:\n  listen: ${agent.adminUrl.replace('http://', '')}\nagent:\n  stateDir: ${agent.dir}/state\nauth:\n  enabled: false\n`);
    agent.proc.kill('SIGHUP');
    await agent.waitForLog((e) => e.msg === 'stopping subsystem (disabled by reload)' && e.subsystem === 'auth');
    await agent.waitForLog((e) => e.msg === 'config reloaded' && agent.logLines.filter((l) => l.includes('"config reloaded"')).length >= 2);
    assert.equal((await fetch(`${agent.adminUrl}/v1/auth`)).status, 404);
    assert.equal((await status()).status, 200, 'without auth the API answers loopback again');
  } finally {
    await agent.stop();
    await dev.close();
  }
});

test('agent refuses auth without issuer or audience, naming the field', async () => {
  await assert.rejects(startAgent('auth:\n  enabled: true\n  audience: [p]\n'), /auth\.issuer: required when auth is enabled/);
  await assert.rejects(
    startAgent('auth:\n  enabled: true\n  issuer: http://127.0.0.1:9\n  introspection:\n    mode: introspect-opaque\n'),
    /auth\.audience: required/,
  );
});
