// `cbr status` for people: the agent's /v1/status and the status page's snapshot as plain tables.
import type { StatusSnapshot } from '../dataplane/index.js';

/** What GET /v1/status answers (agent/agent.ts). */
export interface AgentStatus {
  version: string;
  pop: string;
  pid: number;
  uptimeSeconds: number;
  subsystems: string[];
  health: StatusSnapshot['health'];
  children: StatusSnapshot['children'];
}

/** Columns padded to their widest cell; the last column is not padded. */
export function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

export function duration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s}s`;
  if (s < 5400) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 172_800) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86_400)}d ${Math.floor((s % 86_400) / 3600)}h`;
}

function ago(iso: string | undefined, now: number): string {
  return iso ? `${duration((now - Date.parse(iso)) / 1000)} ago` : '';
}

const rate = (v: number | null | undefined) => (v === null || v === undefined ? '-' : v.toFixed(1));

export function formatStatus(st: AgentStatus, page: StatusSnapshot | undefined, now = Date.now()): string {
  const out: string[] = [];
  out.push(
    `${st.pop}  cbr ${st.version}  pid ${st.pid}  up ${duration(st.uptimeSeconds)}  health: ${st.health.state.toUpperCase()}${st.health.draining ? ' (draining)' : ''}`,
  );
  out.push(`subsystems: ${st.subsystems.length ? st.subsystems.join(', ') : 'none'}`);
  out.push('');
  out.push(
    st.health.checks.length
      ? table(
          ['CHECK', 'STATE', 'LAST', 'CHANGED', 'ERROR'],
          st.health.checks.map((c) => [c.name, c.healthy ? 'up' : 'DOWN', c.lastResult, ago(c.lastChangeAt, now), c.lastError ?? '']),
        )
      : 'no health checks',
  );
  const b = page?.bgp;
  if (b) {
    out.push('');
    out.push(
      `BGP: ${b.state} (changed ${ago(b.lastChange, now)}${b.lastChangeReason ? `: ${b.lastChangeReason}` : ''}), BIRD ${b.birdRunning ? 'running' : 'NOT RUNNING'}`,
    );
    if (b.lastError) out.push(`error: ${b.lastError}`);
    out.push(
      table(
        ['PREFIX', 'STATE', 'SINCE', 'WHY'],
        b.prefixes.map((p) => [p.prefix, p.state, ago(p.since, now), p.why]),
      ),
    );
    out.push(
      table(
        ['SESSION', 'ADDRESS', 'AS', 'STATE', 'SINCE'],
        b.sessions.map((x) => [x.peer, x.address, String(x.remoteAs), x.state, x.since ?? '']),
      ),
    );
  }
  if (page) {
    const t = page.tunnels;
    out.push('');
    out.push(
      t.sessions.length
        ? `tunnels: ${t.sessions.map((x) => `${x.kind} ${x.count}`).join(', ')}; QUIC handshakes ${rate(t.handshakesPerSecond)}/s; WireGuard registrations ${rate(t.registrationsPerSecond)}/s`
        : 'tunnels: none enabled',
    );
    if (page.xdp) {
      const drops = page.xdp.series.filter((s) => s.name.startsWith('dropped: ') && (s.values.at(-1) ?? 0) > 0);
      out.push(
        `XDP: passed ${rate(page.xdp.passedPerSecond)} pkt/s, dropped ${rate(page.xdp.droppedPerSecond)} pkt/s${drops.length ? ` (${drops.map((s) => `${s.name.slice(9)} ${rate(s.values.at(-1))}`).join(', ')})` : ''}`,
      );
    }
  }
  out.push('');
  out.push(
    st.children.length
      ? table(
          ['CHILD', 'STATE', 'PID', 'RESTARTS'],
          st.children.map((c) => [c.name, c.state, c.pid === undefined ? '' : String(c.pid), String(c.restarts)]),
        )
      : 'no supervised processes',
  );
  return `${out.join('\n')}\n`;
}
