// The egress policy of a tunnel interface (a WireGuard link or the MASQUE connect-ip TUN), enforced
// by the PoP's kernel with one nftables table per interface: what tunnel clients may reach through
// the PoP. Denied unless configured: the special-purpose ranges (private, loopback, link-local incl.
// cloud metadata, CGNAT, documentation, multicast…), the PoP's own addresses (anything delivered
// locally from the tunnel, except ICMP and replies to the PoP's own connections), and traffic from
// one client of the interface to another. Rendering is pure; `EgressGuard` applies and removes it.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { isIPv4 } from 'node:net';
import { Gauge, type Registry } from 'prom-client';
import { SPECIAL_PURPOSE_V4, SPECIAL_PURPOSE_V6 } from '../net/special-ranges.js';
import { CbrError, errorMessage } from '../errors.js';

const execFileAsync = promisify(execFile);

export interface EgressPolicy {
  /** Destinations allowed although a deny range covers them (e.g. an internal origin). */
  allow: readonly string[];
  /** Extra destinations denied on top of the special-purpose ranges. */
  deny: readonly string[];
  /** Let the special-purpose ranges through (a lab; never on the internet). */
  allowPrivate: boolean;
  /** Let clients of one interface reach each other. */
  allowPeerToPeer: boolean;
  /** Let clients open connections to the PoP itself through the tunnel. */
  allowPopAddresses: boolean;
}

export const EGRESS_DROP_REASONS = ['private', 'peer', 'pop'] as const;
export type EgressDropReason = (typeof EGRESS_DROP_REASONS)[number];

/** `cbr_egress_<ifname>`, with characters nft does not take in a table name replaced. */
export function egressTableName(ifname: string): string {
  return `cbr_egress_${ifname.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

function setBlock(name: string, type: 'ipv4_addr' | 'ipv6_addr', prefixes: readonly string[]): string[] {
  const head = `  set ${name} { type ${type}; flags interval; auto-merge;`;
  return prefixes.length ? [`${head} elements = { ${prefixes.join(', ')} } }`] : [`${head} }`];
}

/** The nft script (for `nft -f -`) that installs the policy for `ifname`; replaces an older copy. */
export function renderEgressRules(ifname: string, policy: EgressPolicy): string {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(ifname)) throw new CbrError('INVALID_ARGUMENT', `not an interface name: ${JSON.stringify(ifname)}`);
  const table = egressTableName(ifname);
  const split = (list: readonly string[]) => [list.filter((p) => isIPv4(p.split('/')[0] ?? '')), list.filter((p) => !isIPv4(p.split('/')[0] ?? ''))] as const;
  const [allow4, allow6] = split(policy.allow);
  const [deny4, deny6] = split([...(policy.allowPrivate ? [] : [...SPECIAL_PURPOSE_V4, ...SPECIAL_PURPOSE_V6]), ...policy.deny]);
  const iif = `iifname "${ifname}"`;
  const lines = [
    // Creating then deleting makes the script idempotent: a re-apply replaces the table atomically.
    `table inet ${table} {}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    ...EGRESS_DROP_REASONS.map((r) => `  counter ${r} {}`),
    ...setBlock('allow4', 'ipv4_addr', allow4),
    ...setBlock('allow6', 'ipv6_addr', allow6),
    ...setBlock('deny4', 'ipv4_addr', deny4),
    ...setBlock('deny6', 'ipv6_addr', deny6),
    '  chain forward {',
    // Before the default filter priority, so another table's accept cannot let it through first.
    '    type filter hook forward priority filter - 10; policy accept;',
    ...(policy.allowPeerToPeer ? [] : [`    ${iif} oifname "${ifname}" counter name peer drop`]),
    `    ${iif} ip daddr @allow4 accept`,
    `    ${iif} ip6 daddr @allow6 accept`,
    `    ${iif} ip daddr @deny4 counter name private drop`,
    `    ${iif} ip6 daddr @deny6 counter name private drop`,
    '  }',
    '  chain input {',
    '    type filter hook input priority filter - 10; policy accept;',
    ...(policy.allowPopAddresses
      ? []
      : [
          `    ${iif} ct state established,related accept`,
          // ping of the tunnel gateway, PMTU and neighbour discovery keep working
          `    ${iif} meta l4proto { icmp, ipv6-icmp } accept`,
          `    ${iif} counter name pop drop`,
        ]),
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

/** Packets dropped per reason, from `nft -j list counters table inet <table>`. */
export function parseEgressCounters(json: string): Record<EgressDropReason, number> {
  const out: Record<EgressDropReason, number> = { private: 0, peer: 0, pop: 0 };
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new CbrError('COMMAND_FAILED', `nft printed something that is not JSON: ${errorMessage(err)}`, { cause: err });
  }
  const items = (doc as { nftables?: unknown } | null)?.nftables;
  if (!Array.isArray(items)) throw new CbrError('COMMAND_FAILED', 'nft printed JSON without an nftables list');
  for (const it of items as Array<{ counter?: { name?: unknown; packets?: unknown } } | null>) {
    const name = it?.counter?.name;
    const packets = it?.counter?.packets;
    if (typeof name === 'string' && (EGRESS_DROP_REASONS as readonly string[]).includes(name) && typeof packets === 'number')
      out[name as EgressDropReason] = packets;
  }
  return out;
}

const guards = new Set<EgressGuard>();
let dropsGauge: Gauge | undefined;

/** Registers `cbr_egress_dropped_packets{interface,reason}` once per registry (read from nft at scrape). */
function ensureMetric(registry: Registry): void {
  if (dropsGauge && registry.getSingleMetric('cbr_egress_dropped_packets')) return;
  dropsGauge = new Gauge({
    name: 'cbr_egress_dropped_packets',
    help: 'Packets from tunnel clients dropped by the egress policy, by interface and reason (private, peer, pop)',
    labelNames: ['interface', 'reason'],
    registers: [registry],
    async collect() {
      this.reset();
      for (const g of guards) {
        const counts = await g.counters().catch(() => undefined);
        if (counts) for (const r of EGRESS_DROP_REASONS) this.set({ interface: g.ifname, reason: r }, counts[r]);
      }
    },
  });
}

/** Applies the policy of one interface and removes it again; `prefix` runs nft elsewhere (tests: `ip netns exec`). */
export class EgressGuard {
  private applied = false;

  constructor(
    readonly ifname: string,
    private policy: EgressPolicy,
    private readonly opts: { registry?: Registry; prefix?: string[] } = {},
  ) {}

  private nft(args: string[], input?: string): Promise<string> {
    const argv = [...(this.opts.prefix ?? []), 'nft', ...args];
    const p = execFileAsync(argv[0]!, argv.slice(1), { timeout: 10_000 });
    if (input !== undefined) p.child.stdin?.end(input);
    return p.then(
      (r) => r.stdout,
      (err: { stderr?: string }) => {
        throw new CbrError('COMMAND_FAILED', `nft ${args.join(' ')}: ${(err.stderr ?? errorMessage(err)).trim()}`, { cause: err });
      },
    );
  }

  /** Installs (or replaces) the rules; throws naming what nft refused. */
  async apply(policy: EgressPolicy = this.policy): Promise<void> {
    await this.nft(['-f', '-'], renderEgressRules(this.ifname, policy));
    this.policy = policy;
    this.applied = true;
    if (this.opts.registry) ensureMetric(this.opts.registry);
    guards.add(this);
  }

  async counters(): Promise<Record<EgressDropReason, number>> {
    return parseEgressCounters(await this.nft(['-j', 'list', 'counters', 'table', 'inet', egressTableName(this.ifname)]));
  }

  async remove(): Promise<void> {
    guards.delete(this);
    if (!this.applied) return;
    this.applied = false;
    await this.nft(['delete', 'table', 'inet', egressTableName(this.ifname)]).catch(() => {
      // already gone (the interface's namespace was removed, or an operator flushed the ruleset)
    });
  }
}
