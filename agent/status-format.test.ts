// `cbr status`: the table format (unit) and the command against a running agent (human and --json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startAgent, runCli } from '../dataplane/testing.js';
import { formatStatus, table, duration, type AgentStatus } from './status-format.js';
import { EXIT, type StatusSnapshot } from '../dataplane/index.js';

test('table pads every column but the last; duration reads like a person would say it', () => {
  assert.equal(
    table(
      ['A', 'BB'],
      [
        ['xxx', 'y'],
        ['z', ''],
      ],
    ),
    'A    BB\nxxx  y\nz',
  );
  assert.deepEqual([duration(5), duration(125), duration(7300), duration(200_000)], ['5s', '2m 5s', '2h 1m', '2d 7h']);
});

test('formatStatus: health checks, BGP prefixes with why, tunnels, XDP drops by reason, children', () => {
  const now = Date.parse('2026-01-01T00:10:00Z');
  const st: AgentStatus = {
    version: '0.1.0',
    pop: 'pop-a',
    pid: 42,
    uptimeSeconds: 600,
    subsystems: ['xdp', 'bgp'],
    health: {
      state: 'draining',
      draining: true,
      checks: [{ name: 'bgp.sessions', healthy: true, lastResult: 'pass', lastChangeAt: '2026-01-01T00:09:00Z' }],
    },
    children: [{ name: 'bird', state: 'running', pid: 43, restarts: 2 }],
  };
  const page = {
    bgp: {
      state: 'drain',
      lastChange: '2026-01-01T00:09:50Z',
      lastChangeReason: 'health draining',
      birdRunning: true,
      sessions: [{ peer: 'up4', address: '10.0.1.1', remoteAs: 65000, state: 'Established', up: true }],
      prefixes: [{ prefix: '198.51.100.1/32', state: 'draining', since: '2026-01-01T00:09:50Z', why: 'health draining' }],
    },
    tunnels: { sessions: [{ kind: 'wireguard', count: 3 }], handshakesPerSecond: null, handshakes: [], registrationsPerSecond: 0.5 },
    xdp: {
      passedPerSecond: 100,
      droppedPerSecond: 7,
      series: [
        { name: 'passed', values: [100] },
        { name: 'dropped: denylist', values: [7] },
      ],
    },
  } as unknown as StatusSnapshot;
  assert.equal(
    formatStatus(st, page, now),
    `pop-a  cbr 0.1.0  pid 42  up 10m 0s  health: DRAINING (draining)
subsystems: xdp, bgp

CHECK         STATE  LAST  CHANGED  ERROR
bgp.sessions  up     pass  60s ago

BGP: drain (changed 10s ago: health draining), BIRD running
PREFIX           STATE     SINCE    WHY
198.51.100.1/32  draining  10s ago  health draining
SESSION  ADDRESS   AS     STATE        SINCE
up4      10.0.1.1  65000  Established

tunnels: wireguard 3; QUIC handshakes -/s; WireGuard registrations 0.5/s
XDP: passed 100.0 pkt/s, dropped 7.0 pkt/s (denylist 7.0)

CHILD  STATE    PID  RESTARTS
bird   running  43   2
`,
  );
});

test('cbr status against a running agent: a table by default, JSON with --json', async () => {
  const agent = await startAgent('agent:\n  name: pop-status\nhealth:\n  checks:\n    - name: ok\n      command: ["true"]\n      interval: 200ms\n');
  try {
    const human = await runCli(['status', '--admin', agent.adminUrl]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^pop-status {2}cbr \S+ {2}pid \d+ {2}up \d+s {2}health: (UP|DOWN)/);
    assert.match(human.stdout, /^CHECK +STATE +LAST +CHANGED +ERROR$/m);
    assert.match(human.stdout, /^external\.ok +(up|DOWN) /m);
    assert.match(human.stdout, /^tunnels: none enabled$/m);
    const json = await runCli(['status', '--json', '--admin', agent.adminUrl]);
    assert.equal(json.code, 0, json.stderr);
    const j = JSON.parse(json.stdout) as AgentStatus & { tunnels: unknown };
    assert.equal(j.pop, 'pop-status');
    assert.equal(j.pid, agent.pid);
    assert.deepEqual(
      j.health.checks.map((c) => c.name),
      ['external.ok'],
    );
    assert.ok(j.tunnels);
    const down = await runCli(['status', '--admin', 'http://127.0.0.1:9']);
    assert.equal(down.code, EXIT.UNAVAILABLE);
    assert.match(down.stderr, /cannot reach the agent/);
  } finally {
    await agent.stop();
  }
});
