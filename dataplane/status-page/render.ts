// The status page's one renderer: a pure function from a snapshot to HTML. The server calls it for
// the first paint and ships its source text to the browser (Function.prototype.toString), which
// calls it again on every poll, so there is no second copy of the markup and no build step. It must
// therefore stay self-contained: no imports, no module-level names, only nested helpers.
import type { StatusSnapshot } from './snapshot.js';

export function renderStatusBody(s: StatusSnapshot): string {
  const esc = (v: unknown): string =>
    String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
  const OK = ['up', 'announce', 'announced', 'running', 'established', 'pass', 'healthy'];
  const WARN = ['draining', 'drain', 'starting', 'backoff', 'stopping', 'pending', 'graceful'];
  const tone = (state: string): string => {
    const k = state.toLowerCase();
    return OK.includes(k) ? 'ok' : WARN.includes(k) ? 'warn' : 'bad';
  };
  const badge = (state: string, text = state): string => `<span class="badge ${tone(state)}" data-state="${esc(state)}">${esc(text)}</span>`;
  const ago = (iso: string | undefined): string => {
    if (!iso) return '';
    const sec = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
    const rel = sec < 90 ? `${sec}s` : sec < 5400 ? `${Math.round(sec / 60)}m` : `${Math.round(sec / 3600)}h`;
    return `<time datetime="${esc(iso)}" title="${esc(iso)}">${rel} ago</time>`;
  };
  const num = (v: number | null | undefined, digits = 1): string =>
    v === null || v === undefined ? '–' : v >= 100 ? Math.round(v).toLocaleString('en') : v.toFixed(digits);
  const table = (head: string[], rows: string[][], empty: string): string =>
    rows.length === 0
      ? `<p class="muted">${esc(empty)}</p>`
      : `<table><thead><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('')}</tbody></table>`;
  const COLORS = ['#1a7f37', '#cf222e', '#bc4c00', '#8250df', '#0969da', '#9a6700', '#bf3989', '#1b7c83'];
  const chart = (series: Array<{ name: string; values: number[] }>, w: number, h: number, unit: string): string => {
    const n = Math.max(2, ...series.map((x) => x.values.length));
    const max = Math.max(1, ...series.flatMap((x) => x.values));
    const lines = series
      .map((x, i) => {
        const pts = x.values.map((v, j) => `${((j + n - x.values.length) / (n - 1)) * w},${(h - (v / max) * (h - 4) - 2).toFixed(1)}`).join(' ');
        return `<polyline fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.5" points="${pts}"/>`;
      })
      .join('');
    const legend = series
      .map(
        (x, i) =>
          `<span class="key"><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(x.name)} <b>${num(x.values.at(-1) ?? 0)}</b>${esc(unit)}</span>`,
      )
      .join(' ');
    const minutes = Math.round(((n - 1) * s.sampleIntervalSeconds) / 60);
    return `<svg class="chart" viewBox="0 0 ${w} ${h}" width="100%" height="${h}" preserveAspectRatio="none" role="img" aria-label="per-second rates"><line x1="0" y1="${h - 1}" x2="${w}" y2="${h - 1}" stroke="#d0d7de"/>${lines}</svg><div class="axis"><span>${minutes > 0 ? `−${minutes} min` : 'start'}</span><span>peak ${num(max)}${esc(unit)}</span><span>now</span></div><div class="legend">${legend}</div>`;
  };

  const parts: string[] = [];
  parts.push(
    `<header><h1>${esc(s.pop)}</h1>${badge(s.health.state, `health: ${s.health.state}`)}<span class="muted">cbr ${esc(s.version)} · up ${num(s.uptimeSeconds / 3600, 1)} h · updated <span id="updated">${esc(s.generatedAt.slice(11, 19))}</span> UTC</span></header>`,
  );

  parts.push(
    `<section id="health"><h2>Health</h2>${table(
      ['check', 'state', 'last result', 'changed', 'error'],
      s.health.checks.map((c) => [
        esc(c.name),
        badge(c.healthy ? 'up' : 'down'),
        esc(c.lastResult),
        ago(c.lastChangeAt),
        `<span class="err">${esc(c.lastError ?? '')}</span>`,
      ]),
      'no health checks registered',
    )}${s.health.draining ? '<p class="note warn">The agent is draining (POST /v1/drain or shutdown).</p>' : ''}</section>`,
  );

  if (s.bgp) {
    const b = s.bgp;
    parts.push(
      `<section id="bgp"><h2>BGP</h2><p>announce state ${badge(b.state)}${b.applied && b.applied !== b.state ? ` <span class="muted">(BIRD has ${esc(b.applied)})</span>` : ''} changed ${ago(b.lastChange)}${b.lastChangeReason ? ` because <q>${esc(b.lastChangeReason)}</q>` : ''} · BIRD ${badge(b.birdRunning ? 'running' : 'stopped')}</p>${b.lastError ? `<p class="err">${esc(b.lastError)}</p>` : ''}${table(
        ['prefix', 'state', 'since', 'why'],
        b.prefixes.map((p) => [`<code>${esc(p.prefix)}</code>`, badge(p.state), ago(p.since), esc(p.why)]),
        'no prefixes configured',
      )}${table(
        ['session', 'address', 'AS', 'state', 'since'],
        b.sessions.map((x) => [
          esc(x.peer),
          `<code>${esc(x.address)}</code>`,
          esc(x.remoteAs),
          badge(x.up ? 'established' : 'down', x.state),
          esc(x.since ?? ''),
        ]),
        'no BGP sessions reported yet',
      )}</section>`,
    );
  }

  const t = s.tunnels;
  parts.push(
    `<section id="tunnels"><h2>Tunnels</h2>${table(
      ['kind', 'sessions'],
      t.sessions.map((x) => [esc(x.kind), `<b class="num">${num(x.count, 0)}</b>`]),
      'no tunnel listener enabled',
    )}${t.handshakesPerSecond === null && t.registrationsPerSecond === null ? '' : `<p>QUIC handshakes <b class="num" id="handshakes">${num(t.handshakesPerSecond, 2)}</b>/s · WireGuard registrations <b class="num">${num(t.registrationsPerSecond, 2)}</b>/s</p>`}${t.handshakesPerSecond === null ? '' : chart([{ name: 'handshakes', values: t.handshakes }], 560, 60, '/s')}</section>`,
  );

  if (s.xdp) {
    const x = s.xdp;
    parts.push(
      `<section id="xdp"><h2>XDP filter</h2><p>passed <b class="num ok-text" id="xdp-pass">${num(x.passedPerSecond)}</b> pkt/s · dropped <b class="num ${x.droppedPerSecond > 0 ? 'bad-text' : ''}" id="xdp-drop">${num(x.droppedPerSecond)}</b> pkt/s</p>${chart(x.series, 560, 120, ' pkt/s')}<p class="muted">Top denied sources: the filter keeps no per-source counters yet.</p></section>`,
    );
  }

  parts.push(
    `<section id="children"><h2>Supervised processes</h2>${table(
      ['name', 'state', 'pid', 'restarts'],
      s.children.map((c) => [esc(c.name), badge(c.state), esc(c.pid ?? ''), `<b class="num ${c.restarts > 0 ? 'warn-text' : ''}">${c.restarts}</b>`]),
      'no supervised processes',
    )}</section>`,
  );
  return parts.join('\n');
}
