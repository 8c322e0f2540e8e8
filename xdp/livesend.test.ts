// progTestRunLive (BPF_PROG_TEST_RUN, live frames) through livesend.ts: N redirected frames cross a veth
// pair into namespaces the test made, and the receiving side sees exactly N: the filter's drop/denylist
// counter when it runs on the xdp_frames, and an nftables netdev-ingress counter when a bare XDP_PASS
// program turns them into skbs. Bad arguments get an EINVAL naming what was wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withTopology, type Namespace } from '../testhosts/index.js';
import { BpfObject, progTestRunLive, TEST_XDP_MAX_BATCH } from './libbpf.js';
import { DEFAULT_OBJECT_DIR, detachXdp, pinDirFor } from './loader.js';
import { BARE_XDP_OBJECT, buildPacket, mountTestBpffs } from './testing.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const LIVESEND = join(HERE, 'livesend.js');
const ATTACH = join(HERE, '..', 'bench', 'xdp-flood-attach.js');
const N = 10_000;

const mac = async (ns: Namespace, ifname: string) => (await ns.exec(['cat', `/sys/class/net/${ifname}/address`])).trim();

test('live frames: N redirects reach the peer as N xdp_frames, and through XDP_PASS as N skbs', { timeout: 90_000 }, async () => {
  const bpffs = await mountTestBpffs();
  let pinDir: string | undefined;
  try {
    await withTopology(async (t) => {
      const atk = await t.namespace('lsatk');
      const pop = await t.namespace('lspop');
      const [aEnd, pEnd] = await t.link(atk, pop, { aAddr: '10.70.0.66/24', bAddr: '10.70.0.1/24' });
      const send = async (count: number) =>
        JSON.parse(
          await atk.exec(
            [process.execPath, LIVESEND, aEnd.ifname, String(count), await mac(pop, pEnd.ifname), await mac(atk, aEnd.ifname), '10.70.0.66', '10.70.0.1'],
            {
              timeoutMs: 30_000,
            },
          ),
        ) as { sent: number };
      // the filter on the PoP end, 10.70.0.66 denied: its counter sees each frame
      pinDir = pinDirFor(bpffs.root, pEnd.ifname);
      await pop.exec([process.execPath, ATTACH, pEnd.ifname, pinDir, 'native'], { timeoutMs: 30_000 });
      const denied = async () =>
        (
          JSON.parse(await pop.exec([process.execPath, ATTACH, pEnd.ifname, pinDir!, 'stats'], { timeoutMs: 30_000 })) as Array<{
            action: string;
            reason: string;
            packets: number;
          }>
        )
          .filter((r) => r.action === 'drop' && r.reason === 'denylist')
          .reduce((a, r) => a + r.packets, 0);
      const before = await denied();
      assert.equal((await send(N)).sent, N);
      assert.equal((await denied()) - before, N, 'the filter counted every live frame');
      detachXdp(pinDir);
      // a bare XDP_PASS program: the frames become skbs and reach nftables (10.70.0.66 only: no neighbour traffic)
      await pop.exec(['ip', 'link', 'set', 'dev', pEnd.ifname, 'xdpdrv', 'obj', BARE_XDP_OBJECT, 'sec', 'xdp']);
      await pop.exec(['nft', '-f', '-'], {
        input: `table netdev lstest {\n chain in {\n  type filter hook ingress device "${pEnd.ifname}" priority 0;\n  ip saddr 10.70.0.66 udp dport 9999 counter drop\n }\n}\n`,
      });
      await send(N);
      const m = /counter packets (\d+)/.exec(await pop.exec(['nft', 'list', 'table', 'netdev', 'lstest']));
      assert.equal(Number(m?.[1]), N, 'nftables counted every passed frame');
    });
  } finally {
    if (pinDir) detachXdp(pinDir);
    await bpffs.remove();
  }
});

test('live frames: repeat and batch size out of range are EINVAL naming the argument', () => {
  const obj = BpfObject.open(join(DEFAULT_OBJECT_DIR, 'redirect.bpf.o'));
  try {
    obj.load();
    const fd = obj.progFd('cbr_redirect');
    const pkt = buildPacket({ src: '10.70.0.66', dst: '10.70.0.1' });
    assert.throws(() => progTestRunLive(fd, pkt, { repeat: 0 }), /repeat 0 is not an integer.*errno 22/);
    assert.throws(() => progTestRunLive(fd, pkt, { repeat: 1.5 }), /repeat 1\.5/);
    assert.throws(() => progTestRunLive(fd, pkt, { repeat: 1, batchSize: TEST_XDP_MAX_BATCH + 1 }), /batch size 257/);
    // the redirect target is unset (ifindex 0): the program aborts, which live mode counts and survives
    progTestRunLive(fd, pkt, { repeat: 5 });
  } finally {
    obj.close();
  }
});
