// Helper for bench/xdp-flood: run inside the PoP namespace to load and attach the XDP filter with a
// deny rule for the attacker (`IFNAME PINDIR`), or to print its counters (`IFNAME PINDIR stats`).
import { XdpPipeline, attachXdp } from '../xdp/loader.js';
import { writeConfigMap, syncLists, syncServices, mapSizesFor, readCounters } from '../xdp/control.js';
import { interfaceMac } from '../xdp/loader.js';
import { BpfMap } from '../xdp/libbpf.js';
import { testConfig } from '../xdp/testing.js';
import { join } from 'node:path';

const [ifname, pinDir, what] = process.argv.slice(2);
if (!ifname || !pinDir) {
  process.stderr.write('usage: xdp-flood-attach IFNAME PINDIR [stats]\n');
  process.exit(2);
}
if (what === 'stats') {
  const stats = BpfMap.fromPin(join(pinDir, 'cbr_stats'));
  process.stdout.write(JSON.stringify(readCounters({ map: () => stats }).map((r) => ({ ...r, packets: Number(r.packets), bytes: Number(r.bytes) }))) + '\n');
} else {
  const cfg = testConfig({ interface: ifname, deny: { prefixes: ['10.70.0.66/32'] } });
  const p = XdpPipeline.load({ pinDir, sizes: mapSizesFor(cfg), withLb: false });
  writeConfigMap(p, cfg, interfaceMac(ifname));
  syncLists(p, cfg, { api: { deny: [], allow: [] } });
  syncServices(p, cfg);
  attachXdp(pinDir, ifname, p.filterFd, 'native');
  p.close();
}
