// Control of a kernel WireGuard link, which has no UAPI socket: through wireguard-tools' `wg`
// (netlink). `wg show <if> dump` and `wg setconf`/`wg set` speak to wireguard-go's UAPI socket as
// well, so this path is exercised against wireguard-go in the tests.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { isBase64Key, UapiError, type DeviceSet, type DeviceState, type PeerState } from './uapi.js';
import { isPrefix } from '../../dataplane/index.js';

function field(line: number, name: string, v: string | undefined): string {
  if (v === undefined) throw new UapiError(`wg dump line ${line}: missing ${name}`);
  return v;
}

function dumpKey(line: number, name: string, v: string | undefined): string {
  const s = field(line, name, v);
  if (!isBase64Key(s)) throw new UapiError(`wg dump line ${line}: ${name} is not a base64 key`);
  return s;
}

function dumpUint(line: number, name: string, v: string | undefined, max = Number.MAX_SAFE_INTEGER): number {
  const s = field(line, name, v);
  if (!/^\d{1,20}$/.test(s) || Number(s) > max) throw new UapiError(`wg dump line ${line}: ${name} is not an unsigned integer`);
  return Number(s);
}

/** Parses `wg show <if> dump` (tab-separated; first line the interface, then one line per peer). */
export function decodeWgDump(text: string): DeviceState {
  const lines = text.split('\n').filter((l) => l.length > 0);
  if (lines.length === 0) throw new UapiError('wg dump: empty');
  const head = lines[0]!.split('\t');
  if (head.length !== 4) throw new UapiError(`wg dump line 1: expected 4 fields, got ${head.length}`);
  const state: DeviceState = { peers: [] };
  if (head[0] !== '(none)') state.privateKey = dumpKey(1, 'private-key', head[0]);
  state.listenPort = dumpUint(1, 'listen-port', head[2], 65535);
  if (head[3] !== 'off') state.fwmark = dumpUint(1, 'fwmark', head[3], 0xffffffff);
  for (let i = 1; i < lines.length; i++) {
    const f = lines[i]!.split('\t');
    const n = i + 1;
    if (f.length !== 8) throw new UapiError(`wg dump line ${n}: expected 8 fields, got ${f.length}`);
    const allowed = f[3] === '(none)' ? [] : f[3]!.split(',');
    for (const a of allowed) if (!isPrefix(a)) throw new UapiError(`wg dump line ${n}: allowed-ips has ${JSON.stringify(a.slice(0, 60))}`);
    const peer: PeerState = {
      publicKey: dumpKey(n, 'public-key', f[0]),
      ...(f[1] !== '(none)' ? { presharedKey: dumpKey(n, 'preshared-key', f[1]) } : {}),
      ...(f[2] !== '(none)' ? { endpoint: field(n, 'endpoint', f[2]) } : {}),
      allowedIps: allowed,
      lastHandshakeTimeSec: dumpUint(n, 'latest-handshake', f[4]),
      lastHandshakeTimeNsec: 0,
      rxBytes: dumpUint(n, 'transfer-rx', f[5]),
      txBytes: dumpUint(n, 'transfer-tx', f[6]),
      persistentKeepaliveInterval: f[7] === 'off' ? 0 : dumpUint(n, 'persistent-keepalive', f[7], 65535),
    };
    state.peers.push(peer);
  }
  return state;
}

/** A wg(8) config file (the `wg setconf` format) for a full replace of the device's state. */
export function encodeWgConf(req: DeviceSet): string {
  const out = ['[Interface]'];
  if (req.privateKey !== undefined) out.push(`PrivateKey = ${req.privateKey}`);
  if (req.listenPort !== undefined) out.push(`ListenPort = ${req.listenPort}`);
  if (req.fwmark !== undefined) out.push(`FwMark = ${req.fwmark}`);
  for (const p of req.peers ?? []) {
    if (p.remove) continue;
    out.push('', '[Peer]', `PublicKey = ${p.publicKey}`);
    if (p.presharedKey !== undefined) out.push(`PresharedKey = ${p.presharedKey}`);
    if (p.endpoint !== undefined) out.push(`Endpoint = ${p.endpoint}`);
    if (p.persistentKeepaliveInterval !== undefined) out.push(`PersistentKeepalive = ${p.persistentKeepaliveInterval}`);
    if (p.allowedIps?.length) out.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
  }
  return `${out.join('\n')}\n`;
}

/**
 * Runs fn with a private (0600) file holding `content` in a fresh 0700 directory under `parent`,
 * removed afterwards. `wg` reads keys and configs from files; /dev/stdin does not work for it under
 * Node, whose stdio pipes are sockets. `parent` is a directory only the agent may read (its state
 * directory, which holds the key file anyway), never the shared /tmp.
 */
export async function withSecretFile<T>(parent: string, content: string, fn: (path: string) => Promise<T>): Promise<T> {
  mkdirSync(parent, { recursive: true, mode: 0o700 });
  const dir = mkdtempSync(join(parent, '.wg-'));
  try {
    const path = join(dir, 'data');
    writeFileSync(path, content, { mode: 0o600 });
    return await fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `wg set` arguments for an incremental change (no replace_peers); a private key is read from `keyFile`. */
export function wgSetArgs(ifname: string, req: DeviceSet, keyFile = '/dev/null'): string[] {
  const args = ['set', ifname];
  if (req.listenPort !== undefined) args.push('listen-port', String(req.listenPort));
  if (req.fwmark !== undefined) args.push('fwmark', String(req.fwmark));
  if (req.privateKey !== undefined) args.push('private-key', keyFile);
  for (const p of req.peers ?? []) {
    args.push('peer', p.publicKey);
    if (p.remove) {
      args.push('remove');
      continue;
    }
    if (p.presharedKey !== undefined) throw new UapiError('wg set: preshared keys are not supported on this path');
    if (p.endpoint !== undefined) args.push('endpoint', p.endpoint);
    if (p.persistentKeepaliveInterval !== undefined)
      args.push('persistent-keepalive', p.persistentKeepaliveInterval ? String(p.persistentKeepaliveInterval) : 'off');
    // `wg set ... allowed-ips` always replaces the peer's list.
    if (p.allowedIps !== undefined) args.push('allowed-ips', p.allowedIps.join(','));
  }
  return args;
}

export class WgToolControl {
  constructor(
    readonly ifname: string,
    /** Where the private key and full configs are put for `wg` while it runs (see withSecretFile). */
    private readonly secretDir: string,
    private readonly commandPrefix: string[] = [],
    private readonly timeoutMs = 10_000,
  ) {}

  private run(args: string[]): Promise<string> {
    const argv = [...this.commandPrefix, 'wg', ...args];
    return new Promise((resolve, reject) => {
      execFile(argv[0]!, argv.slice(1), { timeout: this.timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) reject(new UapiError(`wg ${args.slice(0, 2).join(' ')}: ${(stderr || err.message).trim()}`));
        else resolve(stdout);
      });
    });
  }

  async get(): Promise<DeviceState> {
    return decodeWgDump(await this.run(['show', this.ifname, 'dump']));
  }

  async set(req: DeviceSet): Promise<void> {
    if (req.replacePeers) await withSecretFile(this.secretDir, encodeWgConf(req), (f) => this.run(['setconf', this.ifname, f]));
    else if (req.privateKey !== undefined) await withSecretFile(this.secretDir, `${req.privateKey}\n`, (f) => this.run(wgSetArgs(this.ifname, req, f)));
    else await this.run(wgSetArgs(this.ifname, req));
  }
}
