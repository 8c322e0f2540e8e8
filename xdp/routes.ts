// The /v1/xdp admin API: status, counters, and live edits of the deny/allow lists (persisted before
// they are acknowledged).
import { CbrError, HttpError, httpStatusFor, type AdminServer, type Logger, type RouteHandler } from '../dataplane/index.js';
import type { XdpConfig } from './config.js';
import type { XdpPipeline } from './loader.js';
import { configPrefixes, countersJson, liveListAdd, liveListDelete, readCounters, ORIGIN, type ListState } from './control.js';
import { saveListState } from './lists.js';
import type { AutoAllowEntry } from './always-pass.js';
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
  setLists(next: ListState): void;
  status(): unknown;
}

/** Errors with a code become answers with that code's status (httpStatusFor) and the code in the body. */
function answering(handler: RouteHandler): RouteHandler {
  return async (req) => {
    try {
      return await handler(req);
    } catch (err) {
      if (err instanceof CbrError) throw new HttpError(httpStatusFor(err), err.message, {}, err.code);
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

async function prefixFromBody(body: Promise<unknown>) {
  const b = (await body) as { prefix?: unknown } | undefined;
  if (!b || typeof b.prefix !== 'string') throw new CbrError('INVALID_ARGUMENT', 'prefix: expected {"prefix": "192.0.2.0/24"}');
  return parsePrefixParam(b.prefix);
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
          ...(kind === 'allow' ? { auto: host.autoAllow().map((e) => ({ prefix: e.prefix.text, from: e.from })) } : {}),
        },
      })),
    );
    out.push(
      admin.route(
        'POST',
        `/v1/xdp/${kind}`,
        answering(async (req) => {
          const prefix = await prefixFromBody(req.json());
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
        answering((req) => {
          const raw = req.query.get('prefix');
          if (!raw) throw new CbrError('INVALID_ARGUMENT', 'prefix: expected ?prefix=192.0.2.0/24');
          const prefix = parsePrefixParam(raw);
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
          liveListDelete(p, kind, prefix);
          host.log.info({ list: kind, prefix: prefix.text }, 'xdp list entry removed');
          return { body: { list: kind, prefix: prefix.text, removed: true } };
        }),
      ),
    );
  }
  return out;
}
