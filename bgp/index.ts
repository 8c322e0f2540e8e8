// bgp/: BIRD config rendering, control-socket client, BIRD supervision, announce/drain/withdraw.
import type { Command } from 'commander';
import { adminClientFromOptions, withAdminOptions, type SubsystemFactory, type CommandRegistrar } from '../dataplane/index.js';
import { BgpSubsystem, type BgpStatus } from './subsystem.js';
export { bgpConfigSchema, type BgpConfig, type BgpPeerConfig } from './config.js';
export { BgpSubsystem, type BgpStatus, type SessionStatus } from './subsystem.js';
export { checkBirdConfig, readPasswords } from './birdconf.js';
export { decide, type Decision, type DecisionInput, type DrainPhase } from './decide.js';
export { renderBirdConfig, redactPasswords, GRACEFUL_SHUTDOWN, type AnnounceState } from './render.js';
export { BirdControl, BirdCommandError, waitForBird } from './control.js';
export * from './reply.js';

export const bgpSubsystem: SubsystemFactory = {
  name: 'bgp',
  enabled: (c) => c.bgp.enabled,
  create: (ctx) => new BgpSubsystem(ctx),
};

/** Human-readable `cbr bgp status`. */
export function formatBgpStatus(s: BgpStatus): string {
  const lines: string[] = [];
  const drain =
    s.drain.phase === 'none'
      ? 'no'
      : `${s.drain.phase} since ${s.drain.since} (${[s.drain.manual && 'cbr bgp drain', s.drain.file && 'drain file', s.drain.health && 'agent draining'].filter(Boolean).join(', ')})`;
  lines.push(
    `state:     ${s.state}${s.applied !== s.state ? ` (BIRD has: ${s.applied ?? 'unknown'})` : ''}  health: ${s.health}  changed ${s.secondsSinceChange}s ago`,
  );
  lines.push(`draining:  ${drain}`);
  lines.push(
    `bird:      ${s.bird.running ? `running, pid ${s.bird.pid}` : 'not running'}, restarts ${s.bird.restarts}${s.lastConfigureMs !== undefined ? `, last configure ${s.lastConfigureMs} ms` : ''}`,
  );
  if (s.lastError) lines.push(`error:     ${s.lastError}`);
  lines.push('sessions:');
  for (const x of s.sessions)
    lines.push(`  ${x.peer.padEnd(16)} ${x.address.padEnd(24)} AS${String(x.remoteAs).padEnd(11)} ${x.state}${x.since ? ` since ${x.since}` : ''}`);
  lines.push('prefixes:');
  for (const p of s.prefixes) lines.push(`  ${p.prefix.padEnd(44)} ${p.announced ? 'announced' : 'not announced'}`);
  return `${lines.join('\n')}\n`;
}

export const registerBgpCommands: CommandRegistrar = (program: Command) => {
  const bgp = program.command('bgp').description('anycast announcement through the supervised BIRD');
  withAdminOptions(bgp.command('status').description('sessions, their states, announced prefixes and drain state (GET /v1/bgp)'))
    .option('--json', 'print the JSON answer')
    .action(async (opts: { admin?: string; config?: string; json?: boolean }) => {
      const s = (await adminClientFromOptions(opts).get('/v1/bgp')) as BgpStatus;
      process.stdout.write(opts.json ? `${JSON.stringify(s, null, 2)}\n` : formatBgpStatus(s));
    });
  withAdminOptions(
    bgp.command('drain').description('announce with GRACEFUL_SHUTDOWN (65535:0), wait bgp.drain.wait, then withdraw; persists across restarts'),
  ).action(async (opts: { admin?: string; config?: string }) => {
    const s = (await adminClientFromOptions(opts).post('/v1/bgp/drain')) as BgpStatus;
    process.stdout.write(`draining: ${s.state}; withdrawal after ${s.drain.waitMs / 1000}s\n`);
  });
  withAdminOptions(bgp.command('undrain').description('end a drain started by `cbr bgp drain` and announce again while healthy')).action(
    async (opts: { admin?: string; config?: string }) => {
      const s = (await adminClientFromOptions(opts).post('/v1/bgp/undrain')) as BgpStatus & { stillDrainingBecause: string[] };
      process.stdout.write(`state: ${s.state}\n`);
      if (s.stillDrainingBecause.length) process.stderr.write(`still draining because of: ${s.stillDrainingBecause.join(', ')}\n`);
    },
  );
};
