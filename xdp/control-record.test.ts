import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { controlRecordPath, describeControl, readControlRecord, writeControlRecord, HEARTBEAT_STALE_MS, type ControlRecord } from './control-record.js';

const rec: ControlRecord = { pid: 4242, interface: 'eth0', startedAt: 1_000, heartbeatAt: 50_000 };

test('control states: controlled, unresponsive, orphaned, stopped, unknown', () => {
  const alive = () => true;
  const dead = () => false;
  const rows: Array<[ControlRecord | undefined, number, (pid: number) => boolean, string, number | undefined]> = [
    [rec, 52_000, alive, 'controlled', 2],
    [rec, 50_000 + HEARTBEAT_STALE_MS + 1_000, alive, 'unresponsive', 11],
    [rec, 80_000, dead, 'orphaned', 30],
    [{ ...rec, stoppedAt: 60_000 }, 90_000, dead, 'stopped', 30],
    [{ ...rec, stoppedAt: 60_000 }, 90_000, alive, 'stopped', 30],
    [undefined, 90_000, alive, 'unknown', undefined],
  ];
  for (const [r, now, exists, state, since] of rows) {
    const v = describeControl(r, now, exists);
    assert.equal(v.state, state, JSON.stringify(r));
    assert.equal(v.sinceSeconds, since);
    assert.ok(v.detail.length > 0);
  }
});

test('the record round-trips through its file; a torn or foreign file reads as none', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-xdpctl-'));
  try {
    const path = controlRecordPath(dir, 'eth0');
    assert.equal(readControlRecord(path), undefined);
    writeControlRecord(path, rec);
    assert.deepEqual(readControlRecord(path), rec);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.jsonValue().map((v) => JSON.stringify({ ...rec, heartbeatAt: v })),
        ),
        (text) => {
          writeFileSync(path, text);
          const r = readControlRecord(path);
          if (r) assert.ok(Number.isInteger(r.pid) && Number.isFinite(r.heartbeatAt) && typeof r.interface === 'string');
        },
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
