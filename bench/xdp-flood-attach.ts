// Helper for bench/xdp-flood: run inside the PoP namespace to load and attach the XDP filter with a
// deny rule for the attacker (`IFNAME PINDIR [native|generic]`), a bare XDP_PASS program as the
// reference for what XDP on this interface costs by itself (`IFNAME PINDIR bare`), one that drops
// every packet (`IFNAME PINDIR bare_drop`: what an XDP drop costs before any filter logic), or to
// print the filter's counters (`IFNAME PINDIR stats`). Programs stay attached through a link pinned in PINDIR.
import { XdpPipeline, attachXdp, DEFAULT_OBJECT_DIR } from '../xdp/loader.js';
import { writeConfigMap, syncLists, syncServices, mapSizesFor, readCounters } from '../xdp/control.js';
import { interfaceMac } from '../xdp/loader.js';
import { BpfMap, BpfObject } from '../xdp/libbpf.js';
import { mkdirSync } from 'node:fs';
import { testConfig } from '../xdp/testing.js';
import { join } from 'node:path';

const [ifname, pinDir, what] = process.argv.slice(2);
if (!ifname || !pinDir) {
  process.stderr.write('usage: xdp-flood-attach IFNAME PINDIR [native|generic|bare|bare_drop|stats]\n');
  process.exit(2);
}
if (what === 'stats') {
  const stats = BpfMap.fromPin(join(pinDir, 'cbr_stats'));
  process.stdout.write(`${JSON.stringify(readCounters({ map: () => stats }).map((r) => ({ ...r, packets: Number(r.packets), bytes: Number(r.bytes) })))}\n`);
} else if (what === 'bare' || what === 'bare_drop') {
  const bare = BpfObject.open(join(DEFAULT_OBJECT_DIR, `${what}.bpf.o`));
  bare.load();
  mkdirSync(pinDir, { recursive: true, mode: 0o700 });
  attachXdp(pinDir, ifname, bare.progFd(`cbr_${what}`), 'native');
  bare.close();
} else {
  const cfg = testConfig({ interface: ifname, deny: { prefixes: ['10.70.0.66/32'] } });
  const p = XdpPipeline.load({ pinDir, sizes: mapSizesFor(cfg), withLb: false });
  writeConfigMap(p, cfg, interfaceMac(ifname));
  syncLists(p, cfg, { api: { deny: [], allow: [] } });
  syncServices(p, cfg);
  attachXdp(pinDir, ifname, p.filterFd, what === 'generic' ? 'generic' : 'native');
  p.close();
}
