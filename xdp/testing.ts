// Test and bench helpers: craft packets (Ethernet, VLAN, IPv4 with options, IPv6 with extension
// headers, fragments, TCP/UDP/ICMP, QUIC headers) and load the pipeline into a throwaway pin
// directory that is always removed afterwards.
import { xdpConfigSchema, type XdpConfig } from './config.js';
import { XdpPipeline, pinDirFor, detachXdp, DEFAULT_OBJECT_DIR } from './loader.js';
import { join } from 'node:path';
import { writeConfigMap, syncLists, syncServices, syncLb, mapSizesFor } from './control.js';
import { parseAddress } from '../dataplane/index.js';
import { mkdirSync, rmdirSync } from 'node:fs';
import { run, type Namespace, type Topology, type VethEnd } from '../testhosts/index.js';

export const XDP_ABORTED = 0;
export const XDP_DROP = 1;
export const XDP_PASS = 2;
export const XDP_TX = 3;

export interface PacketSpec {
  src: string;
  dst: string;
  proto?: 'udp' | 'tcp' | 'icmp' | number;
  sport?: number;
  dport?: number;
  payload?: Buffer;
  vlans?: number[];
  /** IPv4 options bytes (a multiple of 4). */
  ipv4Options?: Buffer;
  /** IPv6 extension headers in order, each as [next-header number it is, body length in 8-byte units beyond the first 8]. */
  ext6?: Array<{ type: number; len8?: number }>;
  /** Fragment: offset in 8-byte units and more-fragments flag. */
  frag?: { offset: number; more: boolean };
  srcMac?: Buffer;
  dstMac?: Buffer;
}

function csum(buf: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < buf.length; i += 2) s += buf.readUInt16BE(i);
  if (buf.length % 2) s += buf[buf.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

export function buildPacket(spec: PacketSpec): Buffer {
  const src = parseAddress(spec.src);
  const dst = parseAddress(spec.dst);
  const v6 = src.family === 6;
  const protoNum = typeof spec.proto === 'number' ? spec.proto : spec.proto === 'tcp' ? 6 : spec.proto === 'icmp' ? (v6 ? 58 : 1) : 17;
  const payload = spec.payload ?? Buffer.alloc(16, 0xab);
  let l4: Buffer;
  if (protoNum === 17) {
    l4 = Buffer.alloc(8 + payload.length);
    l4.writeUInt16BE(spec.sport ?? 40000, 0);
    l4.writeUInt16BE(spec.dport ?? 443, 2);
    l4.writeUInt16BE(l4.length, 4);
    payload.copy(l4, 8);
  } else if (protoNum === 6) {
    l4 = Buffer.alloc(20 + payload.length);
    l4.writeUInt16BE(spec.sport ?? 40000, 0);
    l4.writeUInt16BE(spec.dport ?? 443, 2);
    l4[12] = 5 << 4;
    l4[13] = 0x02;
    payload.copy(l4, 20);
  } else if (protoNum === 1 || protoNum === 58) {
    l4 = Buffer.alloc(8 + payload.length);
    l4[0] = protoNum === 1 ? 8 : 128;
    payload.copy(l4, 8);
  } else {
    l4 = Buffer.from(payload);
  }
  let l3: Buffer;
  if (!v6) {
    const opts = spec.ipv4Options ?? Buffer.alloc(0);
    const hl = 20 + opts.length;
    l3 = Buffer.alloc(hl);
    l3[0] = 0x40 | (hl / 4);
    l3.writeUInt16BE(hl + l4.length, 2);
    if (spec.frag) l3.writeUInt16BE((spec.frag.more ? 0x2000 : 0) | spec.frag.offset, 6);
    l3[8] = 64;
    l3[9] = protoNum;
    src.addr.copy(l3, 12);
    dst.addr.copy(l3, 16);
    opts.copy(l3, 20);
    l3.writeUInt16BE(csum(l3), 10);
  } else {
    const exts: Buffer[] = [];
    const chain = [...(spec.ext6 ?? [])];
    if (spec.frag) chain.push({ type: 44 });
    const types = chain.map((e) => e.type);
    chain.forEach((e, i) => {
      const next = i + 1 < types.length ? types[i + 1]! : protoNum;
      if (e.type === 44) {
        const h = Buffer.alloc(8);
        h[0] = next;
        h.writeUInt16BE(((spec.frag?.offset ?? 0) << 3) | (spec.frag?.more ? 1 : 0), 2);
        h.writeUInt32BE(0x1234, 4);
        exts.push(h);
      } else if (e.type === 51) {
        const len = e.len8 ?? 1; // AH: (len + 2) * 4 bytes
        const h = Buffer.alloc((len + 2) * 4);
        h[0] = next;
        h[1] = len;
        exts.push(h);
      } else {
        const h = Buffer.alloc(8 * ((e.len8 ?? 0) + 1));
        h[0] = next;
        h[1] = e.len8 ?? 0;
        exts.push(h);
      }
    });
    const ext = Buffer.concat(exts);
    l3 = Buffer.alloc(40);
    l3.writeUInt32BE(0x60000000, 0);
    l3.writeUInt16BE(ext.length + l4.length, 4);
    l3[6] = types.length ? types[0]! : protoNum;
    l3[7] = 64;
    src.addr.copy(l3, 8);
    dst.addr.copy(l3, 24);
    l3 = Buffer.concat([l3, ext]);
  }
  const vlans = spec.vlans ?? [];
  const eth = Buffer.alloc(14 + 4 * vlans.length);
  (spec.dstMac ?? Buffer.from([2, 0, 0, 0, 0, 2])).copy(eth, 0);
  (spec.srcMac ?? Buffer.from([2, 0, 0, 0, 0, 1])).copy(eth, 6);
  let off = 12;
  vlans.forEach((id, i) => {
    eth.writeUInt16BE(i === 0 && vlans.length === 2 ? 0x88a8 : 0x8100, off);
    eth.writeUInt16BE(id, off + 2);
    off += 4;
  });
  eth.writeUInt16BE(v6 ? 0x86dd : 0x0800, off);
  return Buffer.concat([eth, l3, l4]);
}

/** A QUIC short-header packet payload: first byte 0x40 | spin/key bits, then the DCID and some bytes. */
export function quicShort(dcid: Buffer, extra = 32): Buffer {
  return Buffer.concat([Buffer.from([0x41]), dcid, Buffer.alloc(extra, 0x5a)]);
}

/** A QUIC long-header (Initial) payload with the given DCID. */
export function quicLong(dcid: Buffer, extra = 32): Buffer {
  return Buffer.concat([Buffer.from([0xc0, 0, 0, 0, 1, dcid.length]), dcid, Buffer.from([8]), Buffer.alloc(8, 1), Buffer.alloc(extra, 0)]);
}

let seq = 0;
/** A pin directory name for a test or bench run; removed by withTestPipeline. */
export function testPinDir(tag = 'x'): string {
  return pinDirFor('/sys/fs/bpf/cbr', `t${process.pid}${tag}${seq++}`);
}

export function testConfig(xdp: Record<string, unknown>): XdpConfig {
  return xdpConfigSchema.parse({ enabled: true, interface: 'lo', ...xdp });
}

export interface OpenPipeline {
  p: XdpPipeline;
  close(): void;
}

/** Loads and syncs the pipeline for `cfg` into a fresh pin dir; close() unloads and unpins it. */
export function openTestPipeline(cfg: XdpConfig, opts: { withLb?: boolean; srcMac?: Buffer; lbObject?: string } = {}): OpenPipeline {
  const pinDir = testPinDir();
  let p: XdpPipeline | undefined;
  const close = () => {
    p?.close();
    detachXdp(pinDir);
  };
  try {
    p = XdpPipeline.load({ pinDir, sizes: mapSizesFor(cfg), withLb: opts.withLb ?? cfg.lb.vips.length > 0, lbObject: opts.lbObject });
    writeConfigMap(p, cfg, opts.srcMac ?? Buffer.from([2, 0, 0, 0, 0, 0x10]));
    syncLists(p, cfg, { api: { deny: [], allow: [] } });
    syncServices(p, cfg);
    if (cfg.lb.vips.length) syncLb(p, cfg);
    return { p, close };
  } catch (err) {
    close();
    throw err;
  }
}

/** Loads and syncs the pipeline for `cfg` into a fresh pin dir, runs fn, then closes and unpins. */
export async function withTestPipeline<T>(
  cfg: XdpConfig,
  fn: (p: XdpPipeline) => Promise<T> | T,
  opts: { withLb?: boolean; srcMac?: Buffer; lbObject?: string } = {},
): Promise<T> {
  const o = openTestPipeline(cfg, opts);
  try {
    return await fn(o.p);
  } finally {
    o.close();
  }
}

let bpffsSeq = 0;
/** A bpffs of the test's own outside /sys (which `ip netns exec` remounts); unmounted by the returned function. */
export async function mountTestBpffs(): Promise<{ root: string; remove: () => Promise<void> }> {
  const root = `/run/cbr-t${process.pid}-bpf${bpffsSeq++}`;
  mkdirSync(root, { recursive: true });
  await run(['mount', '-t', 'bpf', 'bpf', root]);
  return {
    root,
    remove: async () => {
      await run(['umount', root]).catch(() => undefined);
      try {
        rmdirSync(root);
      } catch {
        /* already gone */
      }
    },
  };
}

/** A bare XDP_PASS program: put on the peer of a veth that runs native XDP (veth NAPI needs one on the sender). */
export const BARE_XDP_OBJECT = join(DEFAULT_OBJECT_DIR, 'bare.bpf.o');

/** Links `sender` to `pop` and puts the bare XDP program on the sender's end, so native XDP on `pop`'s end receives. */
export async function linkForXdp(
  t: Topology,
  sender: Namespace,
  pop: Namespace,
  addrs: { aAddr?: string | string[]; bAddr?: string | string[] },
): Promise<[VethEnd, VethEnd]> {
  const ends = await t.link(sender, pop, addrs);
  await sender.exec(['ip', 'link', 'set', 'dev', ends[0].ifname, 'xdpdrv', 'obj', BARE_XDP_OBJECT, 'sec', 'xdp']);
  return ends;
}
