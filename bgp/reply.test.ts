import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BirdReplyDecoder,
  BirdProtocolError,
  decodeAll,
  encodeReply,
  isErrorReply,
  parseProtocols,
  bgpSessionState,
  parseRoutePrefixes,
  parseCommunities,
  parseAsPath,
  type BirdReply,
  type BirdMessage,
} from './reply.js';

// Captured from BIRD 2.0.12 (greeting, show protocols, configure, show route all, errors).
const CAPTURE =
  '0001 BIRD 2.0.12 ready.\n' +
  '2002-Name       Proto      Table      State  Since         Info\n' +
  '1002-device1    Device     ---        up     2026-11-25 14:16:18  \n' +
  ' anycast4   Static     master4    up     2026-11-25 14:16:18  \n' +
  ' up1        BGP        ---        start  2026-11-25 14:16:18  Active        Socket: Connection refused\n' +
  ' up2        BGP        ---        up     2026-11-25 14:16:19  Established   \n' +
  '0000 \n' +
  '0002-Reading configuration from b.conf\n' +
  '0003 Reconfigured\n' +
  '1007-Table master4:\n' +
  ' 198.51.100.1/32      unicast [pop 14:16:18.066] * (100) [AS65001i]\n' +
  '1008-\tType: BGP univ\n' +
  '1012-\tBGP.origin: IGP\n' +
  ' \tBGP.as_path: 65001 65001\n' +
  ' \tBGP.community: (65535,0) (65001,7)\n' +
  '1007-\n' +
  ' Table master6:\n' +
  ' 2001:db8::/48        blackhole [anycast6 14:16:18.066] * (200)\n' +
  '0000 \n' +
  '+some log line\n' +
  '9001 syntax error, unexpected CF_SYM_UNDEFINED\n' +
  '0002-Reading configuration from /nonexist\n' +
  '8002 /nonexist: No such file or directory\n';

function replies(msgs: BirdMessage[]): BirdReply[] {
  return msgs.flatMap((m) => (m.kind === 'reply' ? [m.reply] : []));
}

test('decodes a captured BIRD session: greeting, tables, continuations, spontaneous lines, errors', () => {
  const msgs = decodeAll(Buffer.from(CAPTURE));
  assert.equal(msgs.filter((m) => m.kind === 'spontaneous').length, 1);
  assert.deepEqual(
    msgs.find((m) => m.kind === 'spontaneous'),
    { kind: 'spontaneous', text: 'some log line' },
  );
  const r = replies(msgs);
  assert.equal(r.length, 6);
  assert.equal(r[0]!.code, 1);
  const protos = parseProtocols(r[1]!);
  assert.deepEqual(
    protos.map((p) => p.name),
    ['device1', 'anycast4', 'up1', 'up2'],
  );
  assert.equal(protos[2]!.since, '2026-11-25 14:16:18');
  assert.equal(bgpSessionState(protos[2]!), 'Active');
  assert.equal(protos[2]!.info, 'Active Socket: Connection refused');
  assert.equal(bgpSessionState(protos[3]!), 'Established');
  assert.equal(r[2]!.code, 3);
  assert.equal(isErrorReply(r[2]!), false);
  assert.deepEqual(parseRoutePrefixes(r[3]!), ['198.51.100.1/32', '2001:db8::/48']);
  assert.deepEqual(parseCommunities(r[3]!), [
    [65535, 0],
    [65001, 7],
  ]);
  assert.deepEqual(parseAsPath(r[3]!), [65001, 65001]);
  assert.equal(r[4]!.code, 9001);
  assert.equal(isErrorReply(r[4]!), true);
  assert.equal(r[5]!.code, 8002);
  assert.deepEqual(
    r[5]!.lines.map((l) => l.code),
    [2, 8002],
  );
});

test('rejects what is not the protocol with BirdProtocolError', () => {
  assert.throws(() => decodeAll(Buffer.from('hello\n')), BirdProtocolError);
  assert.throws(() => decodeAll(Buffer.from(' continuation first\n')), BirdProtocolError);
  assert.throws(() => decodeAll(Buffer.from('12a4 x\n')), BirdProtocolError);
  assert.throws(() => decodeAll(Buffer.from('0001-incomplete\n')), BirdProtocolError);
  assert.throws(() => decodeAll(Buffer.from('0001')), BirdProtocolError);
  assert.throws(() => new BirdReplyDecoder().push(Buffer.alloc(70_000, 0x41)), BirdProtocolError);
});

test('a failed decoder stays failed', () => {
  const d = new BirdReplyDecoder();
  assert.throws(() => d.push(Buffer.from('x\n')), BirdProtocolError);
  assert.throws(() => d.push(Buffer.from('0000 \n')), BirdProtocolError);
});

const lineText = fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, ' '));
const replyArb: fc.Arbitrary<BirdReply> = fc
  .tuple(
    fc.array(
      fc.tuple(fc.integer({ min: 0, max: 9999 }), lineText).map(([code, text]) => ({ code, text })),
      { maxLength: 8 },
    ),
    fc.integer({ min: 0, max: 9999 }),
    lineText,
  )
  .map(([body, code, text]) => ({ code, lines: [...body, { code, text }] }));

test('property: encoded replies decode to the same replies whatever the chunking', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          replyArb.map((r) => ({ r })),
          lineText.map((s) => ({ s })),
        ),
        { maxLength: 6 },
      ),
      fc.array(fc.integer({ min: 1, max: 17 }), { minLength: 1, maxLength: 10 }),
      (items, cuts) => {
        const wire = Buffer.from(items.map((x) => ('r' in x ? encodeReply(x.r) : `+${x.s}\n`)).join(''));
        const d = new BirdReplyDecoder();
        const got: BirdMessage[] = [];
        let off = 0;
        let i = 0;
        while (off < wire.length) {
          const n = cuts[i++ % cuts.length]!;
          got.push(...d.push(wire.subarray(off, off + n)));
          off += n;
        }
        assert.equal(d.midReply, false);
        const want: BirdMessage[] = items.map((x) => ('r' in x ? { kind: 'reply', reply: x.r } : { kind: 'spontaneous', text: x.s }));
        // A line of text that starts with a space after "-" is fine; only the code matters for pairing.
        assert.deepEqual(got, want);
      },
    ),
    { numRuns: 500 },
  );
});

test('property: random bytes never throw anything but BirdProtocolError', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
      const d = new BirdReplyDecoder();
      try {
        for (const c of chunks) {
          const msgs = d.push(c);
          for (const m of msgs) {
            if (m.kind === 'reply') {
              assert.ok(m.reply.code >= 0 && m.reply.code <= 9999);
              parseProtocols(m.reply);
              parseRoutePrefixes(m.reply);
              parseCommunities(m.reply);
              parseAsPath(m.reply);
            }
          }
        }
      } catch (err) {
        if (!(err instanceof BirdProtocolError)) throw err;
      }
    }),
    { numRuns: 1000 },
  );
});

test('property: protocol-shaped random lines never throw anything but BirdProtocolError', () => {
  const line = fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 9999 }), fc.constantFrom('-', ' '), lineText).map(([c, sep, t]) => `${String(c).padStart(4, '0')}${sep}${t}\n`),
    lineText.map((t) => ` ${t}\n`),
    lineText.map((t) => `+${t}\n`),
  );
  fc.assert(
    fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
      try {
        for (const m of decodeAll(Buffer.from(lines.join('')))) if (m.kind === 'reply') parseProtocols(m.reply);
      } catch (err) {
        if (!(err instanceof BirdProtocolError)) throw err;
      }
    }),
    { numRuns: 1000 },
  );
});
