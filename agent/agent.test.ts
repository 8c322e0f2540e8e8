import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { startAgent, runCli, freePort, type AgentProcess } from '../dataplane/testing.js';
import { EXIT } from '../dataplane/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const isMsg = (msg: string) => (e: Record<string, unknown>) => e.msg === msg;

// biome-ignore lint/suspicious/noExplicitAny: the test reads arbitrary JSON bodies
async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(5000) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

test('agent serves /metrics and /healthz, reloads on SIGHUP, exits 0 on SIGTERM', async () => {
  const agent = await startAgent('log:\n  level: info\n');
  try {
    const metrics = await fetch(`${agent.adminUrl}/metrics`).then((r) => r.text());
    assert.match(metrics, /^cbr_build_info\{version="[^"]+"\} 1$/m);
    assert.match(metrics, /^cbr_process_cpu_user_seconds_total /m);
    assert.match(metrics, /^cbr_health_state\{state="up"\} 1$/m);
    const health = await getJson(`${agent.adminUrl}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(health.body.state, 'up');
    assert.deepEqual(health.body.checks, []);
    const status = await getJson(`${agent.adminUrl}/v1/status`);
    assert.equal(status.status, 200);
    assert.equal(status.body.pid, agent.pid);
    assert.equal((await getJson(`${agent.adminUrl}/v1/nope`)).status, 404);

    // A good config: an external check that fails -> /healthz 503 with the check's error.
    const flag = join(agent.dir, 'healthy');
    const admin = agent.adminUrl.replace('http://', '');
    agent.writeConfig(
      `agent:\n  stateDir: ${join(agent.dir, 'state')}\nadmin:\n  listen: ${admin}\nhealth:\n  checks:\n    - { name: flag, command: [test, -f, ${flag}], interval: 100ms, timeout: 1s, rise: 1, fall: 1 }\n`,
    );
    agent.proc.kill('SIGHUP');
    await agent.waitForLog(isMsg('config reloaded'));
    let h = await getJson(`${agent.adminUrl}/healthz`);
    for (let i = 0; i < 50 && h.body.checks.length === 0; i++) {
      await sleep(50);
      h = await getJson(`${agent.adminUrl}/healthz`);
    }
    assert.equal(h.status, 503);
    assert.equal(h.body.state, 'down');
    assert.equal(h.body.checks[0].name, 'external.flag');
    writeFileSync(flag, '');
    for (let i = 0; i < 50 && h.status !== 200; i++) {
      await sleep(50);
      h = await getJson(`${agent.adminUrl}/healthz`);
    }
    assert.equal(h.status, 200);

    // A bad config is rejected with its reasons and the old one keeps running.
    agent.writeConfig(`admin:\n  listen: ${admin}\n  lisen: x\nhealth:\n  checks: nope\n`);
    agent.proc.kill('SIGHUP');
    const rejected = await agent.waitForLog(isMsg('reload rejected: invalid config; keeping the running config'));
    assert.deepEqual(rejected.problems, [
      'admin.lisen: unknown key (did you mean "listen"?); expected one of enabled, listen, apiToken, apiTokenFile, maxConnections',
      'health.checks: expected array, got "nope"',
    ]);
    h = await getJson(`${agent.adminUrl}/healthz`);
    assert.equal(h.status, 200);
    assert.equal(h.body.checks[0].name, 'external.flag');

    // Changing the admin address needs a restart: rejected, old config stays.
    agent.writeConfig(`admin:\n  listen: 127.0.0.1:${await freePort()}\n`);
    agent.proc.kill('SIGHUP');
    await agent.waitForLog(
      (e) => e.msg === 'reload rejected; keeping the running config' && JSON.stringify(e.problems).includes('admin.listen: cannot change on reload'),
    );
  } finally {
    const r = await agent.stop('SIGTERM');
    assert.equal(r.code, 0, `exit ${r.code}/${r.signal}`);
    assert.ok(r.ms < 5000, `SIGTERM took ${r.ms} ms`);
  }
});

test('/v1/ needs the admin token when one is configured', async () => {
  const token = 'test-token-0123456789abcdef';
  const agent = await startAgent(`admin:\n  listen: 127.0.0.1:${await freePort()}\n  apiToken: ${token}\n`);
  try {
    assert.equal((await getJson(`${agent.adminUrl}/v1/status`)).status, 401);
    assert.equal((await getJson(`${agent.adminUrl}/v1/status`, { authorization: 'Bearer wrong-token-wrong-token' })).status, 401);
    assert.equal((await getJson(`${agent.adminUrl}/v1/status`, { authorization: `Bearer ${token}` })).status, 200);
    assert.equal((await getJson(`${agent.adminUrl}/healthz`)).status, 200, '/healthz stays open for load balancers and probes');
    // The CLI finds address and token through the config file.
    const out = await runCli(['status', '--json', '--config', agent.configPath]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(JSON.parse(out.stdout).pid, agent.pid);
    // Drain through the API: healthz 503 while draining.
    const drain = await fetch(`${agent.adminUrl}/v1/drain`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal(drain.status, 200);
    const h = await getJson(`${agent.adminUrl}/healthz`);
    assert.equal(h.status, 503);
    assert.equal(h.body.state, 'draining');
    assert.ok(!agent.logLines.join('\n').includes(token), 'the admin token never reaches the log');
  } finally {
    await agent.stop();
  }
});

test('SIGTERM is bounded by lifecycle.shutdownTimeout (exit 1 when the drain outlasts it)', async () => {
  const agent = await startAgent('lifecycle:\n  shutdownTimeout: 400ms\n  drainTime: 10s\n');
  const r = await agent.stop('SIGTERM');
  assert.equal(r.code, 1);
  assert.ok(r.ms >= 350 && r.ms < 3000, `took ${r.ms} ms`);
});

test('a drain time inside the limit ends with exit 0 after the drain', async () => {
  const agent = await startAgent('lifecycle:\n  shutdownTimeout: 5s\n  drainTime: 300ms\n');
  const r = await agent.stop('SIGINT');
  assert.equal(r.code, 0);
  assert.ok(r.ms >= 280, `took ${r.ms} ms`);
});

test('bad input: invalid config, missing file, port in use, second agent: one clear line each, exit 78 (config) or 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-bad-'));
  let first: AgentProcess | undefined;
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'admin:\n  listen: abc\nxdp:\n  enabeld: true\n');
    let r = await runCli(['agent', '--config', bad]);
    assert.equal(r.code, EXIT.CONFIG);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 2, r.stderr);
    assert.equal(lines[0], 'admin.listen: expected host:port, got "abc"');
    assert.match(lines[1]!, /^xdp\.enabeld: unknown key \(did you mean "enabled"\?\); expected one of enabled, /);
    r = await runCli(['config', 'check', join(dir, 'missing.yaml')]);
    assert.equal(r.code, EXIT.CONFIG);
    assert.equal(r.stderr.trim(), `${join(dir, 'missing.yaml')}: cannot read config file: no such file`);
    r = await runCli(['config', 'check', bad]);
    assert.equal(r.code, EXIT.CONFIG);
    assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');

    first = await startAgent('');
    const port = first.adminUrl.split(':').pop();
    const cfg = join(dir, 'second.yaml');
    writeFileSync(cfg, `admin:\n  listen: 127.0.0.1:${port}\n`);
    r = await runCli(['agent', '--config', cfg]);
    assert.equal(r.code, 1);
    const errLines = r.stderr.trim().split('\n');
    assert.equal(errLines.length, 1, r.stderr);
    assert.equal(errLines[0], `cbr: admin.listen: 127.0.0.1:${port} is already in use (is another agent running?)`);
    r = await runCli(['frobnicate']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  } finally {
    await first?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config check --print censors inline secrets', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-print-'));
  try {
    const file = join(dir, 'c.yaml');
    writeFileSync(file, 'admin:\n  apiToken: s3cret-admin-token-0123456789\n');
    const r = await runCli(['config', 'check', '--print', file]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /s3cret/);
    assert.match(r.stdout, /apiToken: "?\[Redacted\]"?/);
    assert.match(r.stdout, /listen: 127\.0\.0\.1:9780/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an admin token file others can read is refused, naming the file and its mode', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-tokfile-'));
  try {
    const tok = join(dir, 'token');
    writeFileSync(tok, 'a-long-enough-admin-token-0123\n', { mode: 0o644 });
    const cfg = join(dir, 'c.yaml');
    writeFileSync(cfg, `admin:\n  listen: 127.0.0.1:0\n  apiTokenFile: ${tok}\n`);
    const r = await runCli(['agent', '--config', cfg]);
    assert.equal(r.code, EXIT.CONFIG);
    assert.match(r.stderr.trim(), new RegExp(`^admin\\.apiTokenFile: .*${tok.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*644`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('systemd notify: READY, RELOADING, STOPPING and WATCHDOG pings reach NOTIFY_SOCKET', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-notify-'));
  const sock = join(dir, 'notify.sock');
  // Node cannot bind a unix datagram socket; python3 plays systemd's side.
  const receiver = spawn(
    'python3',
    [
      '-c',
      'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound", flush=True)\nwhile True:\n    print(s.recv(4096).decode().replace("\\n","|"), flush=True)\n',
      sock,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const messages: string[] = [];
  createInterface({ input: receiver.stdout! }).on('line', (l) => messages.push(l));
  let agent: AgentProcess | undefined;
  try {
    for (let i = 0; i < 100 && !messages.includes('bound'); i++) await sleep(20);
    if (!messages.includes('bound')) return t.skip('python3 unavailable');
    agent = await startAgent('', { env: { NOTIFY_SOCKET: sock, WATCHDOG_USEC: '200000' } });
    const waitMsg = async (re: RegExp) => {
      for (let i = 0; i < 100; i++) {
        if (messages.some((m) => re.test(m))) return;
        await sleep(30);
      }
      assert.fail(`no notify message matching ${re}; got ${JSON.stringify(messages)}`);
    };
    await waitMsg(/^READY=1\|STATUS=serving; health up\|MAINPID=\d+$/);
    await waitMsg(/^WATCHDOG=1$/);
    const pings = messages.filter((m) => m === 'WATCHDOG=1').length;
    await sleep(350);
    assert.ok(messages.filter((m) => m === 'WATCHDOG=1').length >= pings + 2, 'watchdog pings every WATCHDOG_USEC/2');
    agent.proc.kill('SIGHUP');
    await waitMsg(/^RELOADING=1\|MONOTONIC_USEC=\d+\|STATUS=reloading$/);
    const r = await agent.stop();
    agent = undefined;
    assert.equal(r.code, 0);
    await waitMsg(/^STOPPING=1\|STATUS=stopping$/);
  } finally {
    await agent?.stop();
    receiver.kill('SIGKILL');
    if (existsSync(sock)) unlinkSync(sock);
    rmSync(dir, { recursive: true, force: true });
  }
});
