// `cbr xdp …`: status, counters and list edits through the agent's API, falling back to the pinned
// maps when the agent is not running; `detach` removes the program and its pins.
import { join } from 'node:path';
import type { Command } from 'commander';
import {
  withAdminOptions,
  adminClientFromOptions,
  AdminClientError,
  CbrError,
  errorMessage,
  EXIT,
  ConfigLoader,
  baseConfigSchema,
  type CommandRegistrar,
} from '../dataplane/index.js';
import { controlRecordPath, describeControl, processExists, readControlRecord } from './control-record.js';
import { attachStatus, detachXdp, pinDirFor } from './loader.js';
import { readCounters, countersJson, liveListAdd, liveListDelete, ORIGIN, type ListKind, type CounterRow } from './control.js';
import { parsePrefix, type ParsedPrefix } from '../dataplane/index.js';
import { BpfMap } from './libbpf.js';

interface DirectOpts {
  admin?: string;
  config?: string;
  interface?: string;
  pinRoot?: string;
  stateDir?: string;
}

/** Exit status of `cbr xdp status` when the program runs but its agent is gone or stuck (for monitors). */

/** agent.stateDir: --state-dir, else the config file's (base sections only), else the default. */
function stateDirFor(opts: DirectOpts): string {
  if (opts.stateDir) return opts.stateDir;
  const path = opts.config ?? process.env.CBR_CONFIG;
  if (path) return new ConfigLoader(baseConfigSchema).loadFile(path).config.agent.stateDir;
  return '/var/lib/cbr';
}

interface ListOpts extends DirectOpts {
  fleet?: boolean;
  comment?: string;
}

/** Pin directory for commands that work on the pinned maps without the agent. */
function directPinDir(opts: DirectOpts): { pinDir: string; ifname: string } {
  if (!opts.interface) throw new CbrError('INVALID_ARGUMENT', '--interface: needed to find the pinned maps when the agent is not reachable');
  return { pinDir: pinDirFor(opts.pinRoot ?? '/sys/fs/bpf/cbr', opts.interface), ifname: opts.interface };
}

function withDirectOptions(cmd: Command): Command {
  return withAdminOptions(cmd)
    .option('--interface <ifname>', 'interface whose pinned maps to use when the agent is not running')
    .option('--pin-root <dir>', 'pin root when the agent is not reachable (default /sys/fs/bpf/cbr)');
}

function isUnreachable(err: unknown): boolean {
  return err instanceof AdminClientError && err.status === undefined;
}

function print(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, null, 2)}\n`);
}

function directCounters(pinDir: string): CounterRow[] {
  const stats = BpfMap.fromPin(join(pinDir, 'cbr_stats'));
  try {
    return readCounters({ map: () => stats });
  } finally {
    stats.close();
  }
}

async function listCommand(kind: ListKind, action: 'add' | 'del', prefixText: string, opts: ListOpts): Promise<void> {
  let prefix: ParsedPrefix;
  try {
    prefix = parsePrefix(prefixText);
  } catch (err) {
    throw new CbrError('PREFIX_INVALID', `PREFIX: ${errorMessage(err)}`, { cause: err });
  }
  if (opts.comment !== undefined && !(opts.fleet && action === 'add')) throw new CbrError('INVALID_ARGUMENT', '--comment: only with add --fleet');
  const client = adminClientFromOptions(opts);
  const fleet = opts.fleet === true;
  try {
    print(
      action === 'add'
        ? await client.post(`/v1/xdp/${kind}`, {
            prefix: prefix.text,
            ...(fleet ? { fleet } : {}),
            ...(opts.comment !== undefined ? { comment: opts.comment } : {}),
          })
        : await client.delete(`/v1/xdp/${kind}?prefix=${encodeURIComponent(prefix.text)}${fleet ? '&fleet=true' : ''}`),
    );
    return;
  } catch (err) {
    // The fleet's list lives in the registry: without the agent there is no way to it.
    if (!isUnreachable(err) || !opts.interface || fleet) throw err;
  }
  // Agent not running: write the pinned map directly. The agent's next start re-syncs lists from
  // its config and state file, so this is for emergencies; it says so.
  const { pinDir } = directPinDir(opts);
  const maps = new Map<string, BpfMap>();
  const pinned = { map: (n: string) => maps.get(n) ?? maps.set(n, BpfMap.fromPin(join(pinDir, n))).get(n)! };
  try {
    if (action === 'add') liveListAdd(pinned, kind, prefix, ORIGIN.api);
    else if (!liveListDelete(pinned, kind, prefix)) throw new CbrError('NOT_FOUND', `${prefix.text} is not in the pinned ${kind} list`);
  } finally {
    for (const m of maps.values()) m.close();
  }
  print({
    list: kind,
    prefix: prefix.text,
    [action === 'add' ? 'added' : 'removed']: true,
    direct: true,
    note: 'agent not reachable: changed the pinned map only; the agent re-syncs lists from its config and state on its next start',
  });
}

export const registerXdpCommands: CommandRegistrar = (program) => {
  const xdp = program.command('xdp').description('the XDP filter and load balancer');
  withDirectOptions(xdp.command('status').description('attachment, program and list sizes (agent API, else the pins)'))
    .option('--state-dir <dir>', 'agent.stateDir for the control record when the agent is not reachable (default: from --config, else /var/lib/cbr)')
    .addHelpText('after', `\nWithout an agent, exits ${EXIT.UNCONTROLLED} when the program is attached but its agent died or stopped checking in.`)
    .action(async (opts: DirectOpts) => {
      try {
        print(await adminClientFromOptions(opts).get('/v1/xdp/status'));
      } catch (err) {
        if (!isUnreachable(err) || !opts.interface) throw err;
        const { pinDir, ifname } = directPinDir(opts);
        const attach = attachStatus(pinDir, ifname);
        const control = describeControl(readControlRecord(controlRecordPath(stateDirFor(opts), ifname)), Date.now(), processExists);
        print({ interface: ifname, pinDir, agent: 'not reachable', ...attach, control });
        // The filter goes on with its last lists, but nothing keeps them in step with config and fleet.
        if (attach.attached && (control.state === 'orphaned' || control.state === 'unresponsive')) process.exitCode = EXIT.UNCONTROLLED;
      }
    });
  withDirectOptions(xdp.command('stats').description('packet counters by action and reason (agent API, else the pinned map)')).action(
    async (opts: DirectOpts) => {
      try {
        print(await adminClientFromOptions(opts).get('/v1/xdp/stats'));
      } catch (err) {
        if (!isUnreachable(err) || !opts.interface) throw err;
        print({ counters: countersJson(directCounters(directPinDir(opts).pinDir)), direct: true });
      }
    },
  );
  for (const kind of ['deny', 'allow'] as const) {
    const list = xdp.command(kind).description(`the ${kind} list (live through the agent; straight to the pinned maps when it is not running)`);
    const add = withDirectOptions(list.command('add <prefix>').description(`add a prefix to the ${kind} list`));
    const del = withDirectOptions(list.command('del <prefix>').description(`remove an API-added prefix from the ${kind} list`));
    if (kind === 'deny') {
      add.option('--fleet', "add it to the fleet's deny list (the registry): every PoP applies it").option('--comment <text>', 'why (kept with a fleet entry)');
      del.option('--fleet', "remove it from the fleet's deny list: every PoP drops it");
    }
    withAdminOptions(list.command('list').description(`the ${kind} list's prefixes by origin (agent API)`)).action(async (opts: DirectOpts) =>
      print(await adminClientFromOptions(opts).get(`/v1/xdp/${kind}`)),
    );
    add.action((prefix: string, opts: ListOpts) => listCommand(kind, 'add', prefix, opts));
    del.action((prefix: string, opts: ListOpts) => listCommand(kind, 'del', prefix, opts));
  }
  xdp
    .command('detach')
    .description('detach the program from the interface and remove its pins (the agent leaves them in place when it stops)')
    .requiredOption('--interface <ifname>', 'interface to detach from')
    .option('--pin-root <dir>', 'pin root (default /sys/fs/bpf/cbr)')
    .action(async (opts: DirectOpts) => {
      const { pinDir, ifname } = directPinDir(opts);
      const removed = detachXdp(pinDir);
      print({ interface: ifname, pinDir, detached: removed });
    });
};
