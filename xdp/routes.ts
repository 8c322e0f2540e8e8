// The /v1/xdp admin API: status, counters, and live edits of the deny/allow lists (persisted before
// they are acknowledged): this PoP's own, or with `fleet` the fleet's deny list in the registry.
import { CbrError, HttpError, httpStatusFor, type AdminServer, type Logger, type RouteHandler } from '../dataplane/index.js';
import type { XdpConfig } from './config.js';
import type { XdpPipeline } from './loader.js';
import { configPrefixes, countersJson, liveListAdd, liveListDelete, readCounters, ORIGIN, type ListKind, type ListState } from './control.js';
import { saveListState } from './lists.js';
import type { AutoAllowEntry } from './always-pass.js';
import type { FleetDeny } from './fleet.js';
import { parsePrefix, PrefixError } from '../dataplane/index.js';

/** What the routes need from the running subsystem. */
export interface XdpRouteHost {
  readonly log: Logger;
  readonly stateDir: string;
  config(): XdpConfig;
  pipeline(): XdpPipeline | undefined;
  lists(): ListState;
  /** The allow entries added automatically (xdp.allow.auto). */
  autoAllow(): AutoAllowEntry[];
  /** The fleet's deny list (undefined before start). */
  fleet(): FleetDeny | undefined;
  setLists(next: ListState): void;
  status(): unknown;
}

/** Errors with a code become answers with that code's status (httpStatusFor) and the code in the body. */
function answering(handler: RouteHandler): RouteHandler {
  return async (req) => {
    try {
      return await handler(req);
    } catch (err) {
      if (err instanceof CbrError) {
        const status = httpStatusFor(err);
        // The registry's database away: the write can be retried shortly.
        throw new HttpError(status, err.message, status === 503 ? { 'retry-after': '5' } : {}, err.code);
      }
      throw err;
    }
  };
}

function parsePrefixParam(text: string) {
  try {
    return parsePrefix(text);
  } catch (err) {
    if (err instanceof PrefixError) throw new PrefixError(`prefix: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Longest comment the registry keeps with a fleet entry. */
const MAX_COMMENT = 256;

async function entryFromBody(kind: ListKind, body: Promise<unknown>) {
  const b = (await body) as { prefix?: unknown; fleet?: unknown; comment?: unknown } | undefined;
  if (!b || typeof b !== 'object' || typeof b.prefix !== 'string') throw new CbrError('INVALID_ARGUMENT', 'prefix: expected {"prefix": "192.0.2.0/24"}');
  if (b.fleet !== undefined && typeof b.fleet !== 'boolean') throw new CbrError('INVALID_ARGUMENT', 'fleet: expected true or false');
  const fleet = fleetFlag(kind, b.fleet === true);
  if (b.comment !== undefined && (typeof b.comment !== 'string' || b.comment.length > MAX_COMMENT || !fleet))
    throw new CbrError('INVALID_ARGUMENT', `comment: a string of at most ${MAX_COMMENT} characters, with "fleet": true only`);
  return { prefix: parsePrefixParam(b.prefix), fleet, comment: b.comment as string | undefined };
}

/** Only the deny list is shared by the fleet. */
function fleetFlag(kind: ListKind, fleet: boolean): boolean {
  if (fleet && kind !== 'deny') throw new CbrError('INVALID_ARGUMENT', 'fleet: only the deny list is shared by the fleet');
  return fleet;
}

function requireFleet(host: XdpRouteHost): FleetDeny {
  const f = host.fleet();
  if (!f?.available) throw new CbrError('UNAVAILABLE', 'fleet deny list: the registry is not running');
  return f;
}

function requirePipeline(host: XdpRouteHost): XdpPipeline {
  const p = host.pipeline();
  if (!p) throw new CbrError('UNAVAILABLE', 'xdp: the maps are not loaded');
  return p;
}

/** Adds the routes; returns the functions that remove them. */
export function registerXdpRoutes(admin: AdminServer, host: XdpRouteHost): Array<() => void> {
  const out: Array<() => void> = [];
  out.push(admin.route('GET', '/v1/xdp/status', () => ({ body: host.status() })));
  out.push(
    admin.route('GET', '/v1/xdp/stats', () => {
      const p = host.pipeline();
      return { body: { counters: countersJson(p ? readCounters(p) : []) } };
    }),
  );
  for (const kind of ['deny', 'allow'] as const) {
    out.push(
      admin.route('GET', `/v1/xdp/${kind}`, () => ({
        body: {
          config: configPrefixes(host.config(), kind).map((p) => p.text),
          api: host.lists().api[kind],
          ...(kind === 'deny' ? { fleet: host.fleet()?.list() ?? [] } : {}),
          ...(kind === 'allow' ? { auto: host.autoAllow().map((e) => ({ prefix: e.prefix.text, from: e.from })) } : {}),
        },
      })),
    );
    out.push(
      admin.route(
        'POST',
        `/v1/xdp/${kind}`,
        answering(async (req) => {
          const { prefix, fleet, comment } = await entryFromBody(kind, req.json());
          if (fleet) {
            // Written to the registry; every PoP (this one before the answer) applies it from its feed.
            const added = await requireFleet(host).add(prefix, comment);
            host.log.info({ list: kind, prefix: prefix.text, fleet, new: added }, 'fleet deny entry added');
            return { body: { list: kind, prefix: prefix.text, fleet: true, added: true } };
          }
          const p = requirePipeline(host);
          const lists = host.lists();
          const list = lists.api[kind];
          if (!list.includes(prefix.text)) {
            const next: ListState = { api: { ...lists.api, [kind]: [...list, prefix.text] } };
            saveListState(host.stateDir, next); // persisted before it is acknowledged
            host.setLists(next);
          }
          const inConfig = configPrefixes(host.config(), kind).some((c) => c.text === prefix.text);
          liveListAdd(p, kind, prefix, inConfig ? ORIGIN.config : ORIGIN.api);
          host.log.info({ list: kind, prefix: prefix.text }, 'xdp list entry added');
          return { body: { list: kind, prefix: prefix.text, added: true } };
        }),
      ),
    );
    out.push(
      admin.route(
        'DELETE',
        `/v1/xdp/${kind}`,
        answering(async (req) => {
          const raw = req.query.get('prefix');
          if (!raw) throw new CbrError('INVALID_ARGUMENT', 'prefix: expected ?prefix=192.0.2.0/24');
          const prefix = parsePrefixParam(raw);
          const fleetParam = req.query.get('fleet');
          if (fleetParam !== null && fleetParam !== 'true' && fleetParam !== 'false')
            throw new CbrError('INVALID_ARGUMENT', 'fleet: expected ?fleet=true or false');
          if (fleetFlag(kind, fleetParam === 'true')) {
            if (!(await requireFleet(host).remove(prefix))) throw new CbrError('NOT_FOUND', `${prefix.text} is not in the fleet deny list`);
            host.log.info({ list: kind, prefix: prefix.text, fleet: true }, 'fleet deny entry removed');
            return { body: { list: kind, prefix: prefix.text, fleet: true, removed: true } };
          }
          if (configPrefixes(host.config(), kind).some((c) => c.text === prefix.text))
            throw new CbrError('CONFLICT', `${prefix.text} comes from the config (xdp.${kind}); remove it there and reload`);
          const auto = kind === 'allow' ? host.autoAllow().find((e) => e.prefix.text === prefix.text) : undefined;
          if (auto) throw new CbrError('CONFLICT', `${prefix.text} is allowed automatically (${auto.from}); set xdp.allow.auto: false to manage it yourself`);
          const lists = host.lists();
          const list = lists.api[kind];
          if (!list.includes(prefix.text)) throw new CbrError('NOT_FOUND', `${prefix.text} is not in the ${kind} list`);
          const p = requirePipeline(host);
          const next: ListState = { api: { ...lists.api, [kind]: list.filter((t) => t !== prefix.text) } };
          saveListState(host.stateDir, next);
          host.setLists(next);
          // Still on the fleet's list: it stays in the map with that origin.
          if (kind === 'deny' && host.fleet()?.has(prefix.text)) liveListAdd(p, kind, prefix, ORIGIN.fleet);
          else liveListDelete(p, kind, prefix);
          host.log.info({ list: kind, prefix: prefix.text }, 'xdp list entry removed');
          return { body: { list: kind, prefix: prefix.text, removed: true } };
        }),
      ),
    );
  }
  return out;
}
