// Loads the filter and load-balancer objects, pins every map under <pinRoot>/<ifname>/ (reusing
// what an earlier run pinned there, so counters, lists and buckets survive restarts), and attaches
// the filter through a pinned bpf_link: on restart the link is updated to the new program in one
// atomic step, so filtering never stops while the agent restarts. Stopping the agent leaves the
// link (and so the program) in place; detachXdp() is what takes it away.
import { existsSync, mkdirSync, rmSync, statfsSync, unlinkSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BpfObject,
  type BpfMap,
  BpfError,
  objGet,
  objPin,
  xdpLinkCreate,
  linkUpdate,
  linkDetach,
  linkInfo,
  progInfo,
  progFdById,
  closeFd,
  xdpQueryId,
  xdpModeFlags,
  ifNameToIndex,
  mapInfo,
  u32KeyBuf,
} from './libbpf.js';
import { FILTER_MAPS, LB_MAPS } from './maps.js';
import { errorMessage } from '../dataplane/index.js';

const BPF_FS_MAGIC = 0xcafe4a11;

/** xdp/build of this installation (dist/xdp/loader.js → ../../xdp/build). */
export const DEFAULT_OBJECT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'xdp', 'build');

/**
 * Checks that pins can go under pinRoot: the nearest existing directory must be on a BPF
 * filesystem. (`ip netns exec` remounts /sys for the namespace, which hides the host's
 * /sys/fs/bpf; an agent started that way needs xdp.pinRoot on a bpffs mounted outside /sys.)
 */
export function resolvePinRoot(pinRoot: string): string {
  let dir = pinRoot;
  for (let i = 0; i < 64 && !existsSync(dir); i++) dir = dirname(dir);
  let type = 0;
  try {
    type = statfsSync(dir).type;
  } catch {
    /* reported below */
  }
  if (type !== BPF_FS_MAGIC) {
    throw new BpfError(
      'xdp.pinRoot',
      0,
      `${pinRoot} is not on a BPF filesystem (mount -t bpf bpf /sys/fs/bpf; under \`ip netns exec\`, which remounts /sys, use a bpffs mounted elsewhere)`,
    );
  }
  return pinRoot;
}

export function pinDirFor(pinRoot: string, ifname: string): string {
  return join(resolvePinRoot(pinRoot), ifname);
}

export interface MapSizes {
  deny4: number;
  deny6: number;
  allow4: number;
  allow6: number;
  rateLimitSources: number;
  ringSize: number;
}

export interface LoadOptions {
  pinDir: string;
  objectDir?: string;
  sizes: MapSizes;
  /** Load the LB and install it in the filter's tail-call slot. */
  withLb: boolean;
  /** LB object file name in objectDir (the bench uses lb_bench.bpf.o). */
  lbObject?: string;
  /** Told about maps recreated because their pinned shape no longer matches. */
  onRecreate?: (map: string, why: string) => void;
}

const SIZED: Record<string, keyof MapSizes> = {
  cbr_deny4: 'deny4',
  cbr_deny6: 'deny6',
  cbr_allow4: 'allow4',
  cbr_allow6: 'allow6',
  cbr_rl: 'rateLimitSources',
  cbr_ring: 'ringSize',
};

/** The loaded programs and their (pinned) maps. Closing it leaves pins and any attachment alone. */
export class XdpPipeline {
  readonly maps = new Map<string, BpfMap>();
  private constructor(
    private readonly objects: BpfObject[],
    readonly pinDir: string,
    readonly filterFd: number,
    readonly lbFd: number | undefined,
  ) {
    for (const o of objects) for (const name of o.mapNames()) if (!this.maps.has(name)) this.maps.set(name, o.map(name));
  }

  map(name: string): BpfMap {
    const m = this.maps.get(name);
    if (!m) throw new BpfError(`map ${name}`, 2, 'not loaded');
    return m;
  }

  static load(opts: LoadOptions): XdpPipeline {
    const dir = opts.objectDir ?? DEFAULT_OBJECT_DIR;
    mkdirSync(opts.pinDir, { recursive: true, mode: 0o700 });
    const objects: BpfObject[] = [];
    try {
      const filter = prepare(join(dir, 'filter.bpf.o'), opts);
      objects.push(filter);
      filter.load();
      let lbFd: number | undefined;
      if (opts.withLb) {
        const lb = prepare(join(dir, opts.lbObject ?? 'lb.bpf.o'), opts);
        objects.push(lb);
        lb.load();
        lbFd = lb.progFd('cbr_lb');
      }
      const p = new XdpPipeline(objects, opts.pinDir, filter.progFd('cbr_filter'), lbFd);
      const progs = p.map('cbr_progs');
      if (lbFd !== undefined) {
        const v = Buffer.alloc(4);
        v.writeInt32LE(lbFd);
        progs.update(u32KeyBuf(0), v);
      } else {
        progs.delete(u32KeyBuf(0));
      }
      return p;
    } catch (err) {
      for (const o of objects) o.close();
      throw err;
    }
  }

  close(): void {
    for (const o of this.objects) o.close();
    this.objects.length = 0;
  }
}

function prepare(path: string, opts: LoadOptions): BpfObject {
  if (!existsSync(path)) throw new BpfError(`open ${path}`, 2, `missing; run \`make xdp\` to build the BPF objects`);
  const obj = BpfObject.open(path);
  try {
    for (const name of obj.mapNames()) {
      const sizeKey = SIZED[name];
      if (sizeKey) obj.setMaxEntries(name, opts.sizes[sizeKey]);
      const pin = join(opts.pinDir, name);
      if (existsSync(pin)) {
        // libbpf refuses to reuse a pinned map of another shape: drop the stale pin (its contents are re-synced from config).
        const want = obj.mapSpec(name);
        let why: string | undefined;
        try {
          const fd = objGet(pin);
          try {
            const have = mapInfo(fd);
            if (have.type !== want.type || have.keySize !== want.keySize || have.valueSize !== want.valueSize || have.maxEntries !== want.maxEntries) {
              why = `pinned ${have.keySize}/${have.valueSize} bytes x ${have.maxEntries}, want ${want.keySize}/${want.valueSize} x ${want.maxEntries}`;
            }
          } finally {
            closeFd(fd);
          }
        } catch (err) {
          why = errorMessage(err);
        }
        if (why) {
          unlinkSync(pin);
          opts.onRecreate?.(name, why);
        }
      }
      obj.setPinPath(name, pin);
    }
    return obj;
  } catch (err) {
    obj.close();
    throw err;
  }
}

export interface AttachResult {
  /** true: an existing pinned link was updated in place (no gap); false: a new link was created. */
  reused: boolean;
  linkId: number;
  progId: number;
}

/** Attaches progFd to ifname, through the link pinned at <pinDir>/link when there is one. */
export function attachXdp(pinDir: string, ifname: string, progFd: number, mode: 'native' | 'generic'): AttachResult {
  const ifindex = ifNameToIndex(ifname);
  const linkPin = join(pinDir, 'link');
  if (existsSync(linkPin)) {
    const fd = objGet(linkPin);
    try {
      const info = linkInfo(fd);
      if (info.ifindex === ifindex) {
        linkUpdate(fd, progFd);
        return { reused: true, linkId: info.id, progId: progInfo(progFd).id };
      }
      // the interface was re-created (new ifindex): the old link is dead weight
      linkDetach(fd);
    } finally {
      closeFd(fd);
    }
    unlinkSync(linkPin);
  }
  let fd: number;
  try {
    fd = xdpLinkCreate(progFd, ifindex, xdpModeFlags(mode));
  } catch (err) {
    if (err instanceof BpfError && err.errno === 16)
      throw new BpfError('bpf_link_create', 16, `${ifname} already has an XDP program that is not ours; remove it (ip link set dev ${ifname} xdp off)`);
    throw err;
  }
  try {
    objPin(fd, linkPin);
    return { reused: false, linkId: linkInfo(fd).id, progId: progInfo(progFd).id };
  } finally {
    closeFd(fd);
  }
}

export interface AttachStatus {
  attached: boolean;
  ifindex?: number;
  /** Program attached to the interface right now (0: none). */
  attachedProgId: number;
  attachedProgName?: string;
  /** Program behind our pinned link (0: no link). */
  linkProgId: number;
  linkId?: number;
}

/** Whether our pinned link exists and the interface runs its program. */
export function attachStatus(pinDir: string, ifname: string): AttachStatus {
  let ifindex: number | undefined;
  try {
    ifindex = ifNameToIndex(ifname);
  } catch {
    return { attached: false, attachedProgId: 0, linkProgId: 0 };
  }
  const attachedProgId = xdpQueryId(ifindex, 0);
  let attachedProgName: string | undefined;
  if (attachedProgId) {
    try {
      const pfd = progFdById(attachedProgId);
      try {
        attachedProgName = progInfo(pfd).name;
      } finally {
        closeFd(pfd);
      }
    } catch {
      /* raced with a detach */
    }
  }
  let linkProgId = 0;
  let linkId: number | undefined;
  const linkPin = join(pinDir, 'link');
  if (existsSync(linkPin)) {
    const fd = objGet(linkPin);
    try {
      const info = linkInfo(fd);
      linkProgId = info.progId;
      linkId = info.id;
    } finally {
      closeFd(fd);
    }
  }
  return { attached: attachedProgId !== 0 && attachedProgId === linkProgId, ifindex, attachedProgId, attachedProgName, linkProgId, linkId };
}

/** Detaches our link (if any) and removes every pin of this interface. True when something was removed. */
export function detachXdp(pinDir: string): boolean {
  let did = false;
  const linkPin = join(pinDir, 'link');
  if (existsSync(linkPin)) {
    const fd = objGet(linkPin);
    try {
      try {
        linkDetach(fd);
      } catch (err) {
        if (!(err instanceof BpfError && (err.errno === 2 || err.errno === 67 || err.errno === 22))) throw err; // already gone with its interface
      }
    } finally {
      closeFd(fd);
    }
    did = true;
  }
  if (existsSync(pinDir)) {
    rmSync(pinDir, { recursive: true, force: true });
    did = true;
  }
  return did;
}

/** The interface's MAC address (from sysfs, which `ip netns exec` remounts for the namespace). */
export function interfaceMac(ifname: string): Buffer {
  const text = readFileSync(`/sys/class/net/${ifname}/address`, 'utf8').trim();
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

export { FILTER_MAPS, LB_MAPS };
