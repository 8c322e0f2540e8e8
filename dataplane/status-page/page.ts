// GET / on the admin listener: the live status page (same access rules as /v1/), and the JSON it
// polls, GET /v1/status/page. Everything is inline: no CDN, nothing fetched from outside.
import { randomBytes } from 'node:crypto';
import type { AdminServer } from '../admin.js';
import { renderStatusBody } from './render.js';
import { StatusCollector, type StatusSnapshot, type StatusSources } from './snapshot.js';

export const STATUS_PAGE_JSON = '/v1/status/page';

const STYLE = `
:root { font: 15px/1.4 system-ui, sans-serif; color: #1f2328; background: #f6f8fa; }
body { margin: 0; } main { max-width: 1280px; margin: 0 auto; padding: 12px 20px;
  display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 14px; }
header { grid-column: 1 / -1; display: flex; gap: 14px; align-items: baseline; flex-wrap: wrap; }
h1 { font-size: 1.5rem; margin: 0; } h2 { font-size: 1.05rem; margin: 0 0 8px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 14px; overflow-x: auto; }
table { border-collapse: collapse; width: 100%; margin: 6px 0; } th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eaeef2; vertical-align: top; }
th { font-weight: 600; color: #57606a; font-size: .85rem; } code { font-size: .9rem; } time { white-space: nowrap; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 600; font-size: .85rem; color: #fff; }
.badge.ok { background: #1a7f37; } .badge.warn { background: #bf8700; } .badge.bad { background: #cf222e; }
.ok-text { color: #1a7f37; } .warn-text { color: #9a6700; } .bad-text, .err { color: #cf222e; }
.note.warn { color: #9a6700; font-weight: 600; } .muted { color: #57606a; } .num { font-variant-numeric: tabular-nums; }
.chart { display: block; background: #fbfcfd; border: 1px solid #eaeef2; }
.axis { display: flex; justify-content: space-between; font-size: .8rem; color: #57606a; }
.legend { font-size: .85rem; } .key { white-space: nowrap; margin-right: 10px; } .key i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 2px; }
#live { position: fixed; right: 10px; bottom: 8px; font-size: .8rem; padding: 2px 8px; border-radius: 8px; background: #eaeef2; }
#live.lost { background: #cf222e; color: #fff; }
`;

const TOKEN_KEY = 'cbr-admin-token';

/**
 * The whole page. With a snapshot (the request was authorized) it is painted at once; without one
 * (a browser cannot send a bearer token by itself) it asks for the admin token, keeps it in this
 * tab's sessionStorage and sends it with every poll, so the data stays behind the same check as /v1/.
 */
export function renderStatusPage(s: StatusSnapshot | undefined, o: { nonce: string; pop: string; intervalMs: number }): string {
  const script = `
const renderStatusBody = ${renderStatusBody.toString()};
const app = document.getElementById('app'), live = document.getElementById('live');
async function poll() {
  try {
    const token = sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)});
    const res = await fetch(${JSON.stringify(STATUS_PAGE_JSON)}, { cache: 'no-store', headers: token ? { authorization: 'Bearer ' + token } : {} });
    if (!res.ok) throw new Error('HTTP ' + res.status + (res.status === 401 ? ' (admin token needed)' : ''));
    app.innerHTML = renderStatusBody(await res.json());
    live.textContent = 'live · every ${o.intervalMs / 1000}s'; live.className = '';
  } catch (err) {
    live.textContent = 'not updating: ' + err.message; live.className = 'lost';
  }
}
const login = document.getElementById('login');
if (login) login.addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(${JSON.stringify(TOKEN_KEY)}, document.getElementById('token').value.trim());
  void poll();
});
if (!login || sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})) void poll();
setInterval(() => { if (!login || sessionStorage.getItem(${JSON.stringify(TOKEN_KEY)})) void poll(); }, ${o.intervalMs});`;
  const body = s
    ? renderStatusBody(s)
    : `<section id="login-box"><h2>Admin token needed</h2><p>This agent's admin API needs a bearer token (admin.apiToken). It is kept in this tab only.</p><form id="login"><input id="token" type="password" autocomplete="off" size="40" aria-label="admin token"> <button type="submit">Show status</button></form></section>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(o.pop)} · cbr status</title><style>${STYLE}</style></head>
<body><main id="app">${body}</main><div id="live">${s ? 'live' : 'waiting for the token'}</div>
<script nonce="${o.nonce}">${script}</script></body></html>
`;
}

function escapeHtml(v: string): string {
  return v.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Adds GET / and GET /v1/status/page to the admin listener and starts sampling; returns a stop function. */
export function registerStatusPage(admin: AdminServer, sources: StatusSources): () => void {
  const collector = new StatusCollector(sources);
  collector.start();
  // Public route: without the admin credential it answers 401 with the token form and no data.
  const removePage = admin.route(
    'GET',
    '/',
    async (req) => {
      const nonce = randomBytes(16).toString('base64');
      const ok = await admin.isAuthorized(req);
      return {
        status: ok ? 200 : 401,
        body: renderStatusPage(ok ? await collector.snapshot() : undefined, { nonce, pop: ok ? sources.pop : 'cbr', intervalMs: collector.intervalMs }),
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'cache-control': 'no-store',
          'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; form-action 'none'`,
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
        },
      };
    },
    'public',
  );
  const removeJson = admin.route('GET', STATUS_PAGE_JSON, async () => ({ body: await collector.snapshot(), headers: { 'cache-control': 'no-store' } }));
  return () => {
    collector.stop();
    removePage();
    removeJson();
  };
}
