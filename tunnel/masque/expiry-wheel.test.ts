import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ExpiryWheel } from './expiry-wheel.js';
import { SessionTable, type SessionEndReason } from './sessions.js';
import { CapsuleParser } from '../h3/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('ExpiryWheel: items fire at their deadline, never early, at most a tick late; cancel and reschedule hold', async () => {
  const TICK = 20;
  const fired = new Map<string, number>();
  const wheel = new ExpiryWheel<string>((k) => fired.set(k, Date.now()), TICK);
  const t0 = Date.now();
  const due: Record<string, number> = { a: t0 + 30, b: t0 + 90, c: t0 + 60, gone: t0 + 40, moved: t0 + 20 };
  for (const [k, at] of Object.entries(due)) wheel.schedule(k, at);
  wheel.cancel('gone');
  due.moved = t0 + 150;
  wheel.schedule('moved', due.moved);
  assert.equal(wheel.size, 4);
  for (let i = 0; i < 100 && fired.size < 4; i++) await sleep(10);
  assert.deepEqual([...fired.keys()], ['a', 'c', 'b', 'moved']);
  for (const [k, at] of fired) {
    assert.ok(at >= due[k]!, `${k} fired ${due[k]! - at} ms early`);
    // A tick of rounding plus timer slack on a loaded 2-core machine.
    assert.ok(at - due[k]! <= TICK + 60, `${k} fired ${at - due[k]!} ms late`);
  }
  assert.equal(wheel.size, 0);
  assert.ok(!fired.has('gone'));
  wheel.clear();
});

test('ExpiryWheel: a deadline already past fires on the next sweep; an item scheduled from onExpire fires too', async () => {
  const fired: string[] = [];
  const wheel: ExpiryWheel<string> = new ExpiryWheel((k) => {
    fired.push(k);
    if (k === 'first') wheel.schedule('second', Date.now() + 30);
  }, 10);
  wheel.schedule('first', Date.now() - 1000);
  for (let i = 0; i < 50 && fired.length < 2; i++) await sleep(10);
  assert.deepEqual(fired, ['first', 'second']);
  wheel.clear();
});

test('SessionTable: token expiry on the wheel ends sessions on time, refresh moves it, end cancels it', async () => {
  const ended: Array<{ stream: number; why: SessionEndReason; at: number }> = [];
  const table = new SessionTable<object>({ onEnd: (s, why) => ended.push({ stream: s.streamId, why, at: Date.now() }) });
  const conn = {};
  // Unix seconds: the next whole second at least 400 ms away, so the session is open well before it.
  const expiresAt = Math.ceil((Date.now() + 400) / 1000);
  const open = (streamId: number) => {
    const s = table.begin(conn, streamId, 'udp', { subject: 'sub', roles: [], expiresAt }, new CapsuleParser(), Buffer.alloc(1));
    table.open(s);
    return s;
  };
  open(0);
  const refreshed = open(4);
  const closedEarly = open(8);
  table.refresh(refreshed, { subject: 'sub', roles: [], expiresAt: expiresAt + 1 });
  table.end(closedEarly, 'client');
  assert.equal(table.expiring, 2);
  assert.equal(table.held('sub', 'udp'), 2);

  const deadline = Date.now() + 4000;
  while (ended.length < 3 && Date.now() < deadline) await sleep(20);
  assert.deepEqual(
    ended.map((e) => [e.stream, e.why]),
    [
      [8, 'client'],
      [0, 'token-expired'],
      [4, 'token-expired'],
    ],
  );
  const [, first, second] = ended;
  assert.ok(first!.at >= expiresAt * 1000 && first!.at <= expiresAt * 1000 + 400, `expired at ${first!.at - expiresAt * 1000} ms from its deadline`);
  assert.ok(second!.at >= (expiresAt + 1) * 1000 && second!.at <= (expiresAt + 1) * 1000 + 400, `refreshed one at ${second!.at - (expiresAt + 1) * 1000} ms`);
  assert.equal(table.expiring, 0);
  assert.equal(table.held('sub', 'udp'), 0);
  assert.equal(table.live.udp, 0);
  assert.equal(table.ended['token-expired'], 2);
});
