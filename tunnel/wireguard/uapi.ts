// The cross-platform WireGuard UAPI (wireguard.com/xplatform): `set=1` / `get=1` operations as
// newline-separated key=value lines ending with a blank line, keys in lowercase hex, replies ending
// with `errno=N`. Pure functions over strings; the socket lives in uapi-client.ts.
import { CbrError, isIPv4, isIPv6, isPrefix, splitHostPort } from '../../dataplane/index.js';

/** Anything that does not follow the protocol: a malformed reply or a request we refuse to encode. */
export class UapiError extends CbrError {
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super('UAPI_FAILED', message);
  }
}

const KEY_LEN = 32;
const HEX_KEY_RE = /^[0-9a-f]{64}$/;
const B64_KEY_RE = /^[A-Za-z0-9+/]{43}=$/;

/** Base64 (as wg and wg-quick write keys) → 32 bytes; undefined when it is not a 32-byte key. */
export function keyFromBase64(b64: string): Buffer | undefined {
  if (!B64_KEY_RE.test(b64)) return undefined;
  const buf = Buffer.from(b64, 'base64');
  // The last character carries 2 spare bits; a canonical key has them zero, so it round-trips.
  if (buf.length !== KEY_LEN || buf.toString('base64') !== b64) return undefined;
  return buf;
}

export function isBase64Key(b64: string): boolean {
  return keyFromBase64(b64) !== undefined;
}

export function base64ToHex(b64: string): string {
  const k = keyFromBase64(b64);
  if (!k) throw new UapiError(`not a base64 WireGuard key: ${JSON.stringify(b64.slice(0, 60))}`);
  return k.toString('hex');
}

export function hexToBase64(hex: string): string {
  if (!HEX_KEY_RE.test(hex)) throw new UapiError(`not a 64-digit lowercase hex key: ${JSON.stringify(hex.slice(0, 80))}`);
  return Buffer.from(hex, 'hex').toString('base64');
}

export interface PeerSet {
  /** base64 public key */
  publicKey: string;
  remove?: boolean;
  updateOnly?: boolean;
  presharedKey?: string;
  /** "ip:port" or "[v6]:port" */
  endpoint?: string;
  persistentKeepaliveInterval?: number;
  replaceAllowedIps?: boolean;
  allowedIps?: string[];
}

export interface DeviceSet {
  /** base64 private key */
  privateKey?: string;
  listenPort?: number;
  fwmark?: number;
  replacePeers?: boolean;
  peers?: PeerSet[];
}

function checkUint(name: string, v: number, max: number): string {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new UapiError(`${name}: expected an integer 0-${max}, got ${v}`);
  return String(v);
}

function checkEndpoint(ep: string): string {
  const hp = splitHostPort(ep);
  if (!hp || !(isIPv4(hp.host) || isIPv6(hp.host)) || (isIPv6(hp.host) && !ep.startsWith('['))) {
    throw new UapiError(`endpoint: expected ip:port or [ipv6]:port, got ${JSON.stringify(ep)}`);
  }
  return ep;
}

/** Encodes a `set=1` request (ending with the blank line). Throws UapiError on a value the protocol cannot carry. */
export function encodeSet(req: DeviceSet): string {
  const lines = ['set=1'];
  if (req.privateKey !== undefined) lines.push(`private_key=${base64ToHex(req.privateKey)}`);
  if (req.listenPort !== undefined) lines.push(`listen_port=${checkUint('listen_port', req.listenPort, 65535)}`);
  if (req.fwmark !== undefined) lines.push(`fwmark=${checkUint('fwmark', req.fwmark, 0xffffffff)}`);
  if (req.replacePeers) lines.push('replace_peers=true');
  for (const p of req.peers ?? []) {
    lines.push(`public_key=${base64ToHex(p.publicKey)}`);
    if (p.remove) {
      lines.push('remove=true');
      continue;
    }
    if (p.updateOnly) lines.push('update_only=true');
    if (p.presharedKey !== undefined) lines.push(`preshared_key=${base64ToHex(p.presharedKey)}`);
    if (p.endpoint !== undefined) lines.push(`endpoint=${checkEndpoint(p.endpoint)}`);
    if (p.persistentKeepaliveInterval !== undefined)
      lines.push(`persistent_keepalive_interval=${checkUint('persistent_keepalive_interval', p.persistentKeepaliveInterval, 65535)}`);
    if (p.replaceAllowedIps) lines.push('replace_allowed_ips=true');
    for (const a of p.allowedIps ?? []) {
      if (!isPrefix(a)) throw new UapiError(`allowed_ip: expected a prefix like 10.0.0.2/32, got ${JSON.stringify(a)}`);
      lines.push(`allowed_ip=${a}`);
    }
  }
  return `${lines.join('\n')}\n\n`;
}

export const GET_REQUEST = 'get=1\n\n';

export interface PeerState {
  publicKey: string;
  presharedKey?: string;
  endpoint?: string;
  /** Unix seconds of the last handshake; 0 when there was none. */
  lastHandshakeTimeSec: number;
  lastHandshakeTimeNsec: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepaliveInterval: number;
  protocolVersion?: number;
  allowedIps: string[];
}

export interface DeviceState {
  privateKey?: string;
  listenPort?: number;
  fwmark?: number;
  peers: PeerState[];
}

/** Parses `errno=N` replies; 0 is success, wireguard-go writes negative errnos (-22 = EINVAL). */
export function decodeErrno(reply: string): number {
  const body = stripTerminator(reply);
  const m = /^errno=(-?\d{1,10})$/.exec(body);
  if (!m) throw new UapiError(`expected an errno=N reply, got ${JSON.stringify(reply.slice(0, 80))}`);
  return Number(m[1]);
}

function stripTerminator(reply: string): string {
  if (!reply.endsWith('\n\n')) throw new UapiError('reply does not end with a blank line');
  return reply.slice(0, -2);
}

function parseUint(key: string, v: string, max: number): number {
  if (!/^\d{1,20}$/.test(v)) throw new UapiError(`${key}: expected an unsigned integer, got ${JSON.stringify(v.slice(0, 40))}`);
  const n = Number(v);
  if (n > max) throw new UapiError(`${key}: ${v} is larger than ${max}`);
  return n;
}

function parseHexKey(key: string, v: string): string {
  if (!HEX_KEY_RE.test(v)) throw new UapiError(`${key}: expected 64 lowercase hex digits, got ${JSON.stringify(v.slice(0, 80))}`);
  return Buffer.from(v, 'hex').toString('base64');
}

/**
 * Decodes a `get=1` reply (up to and including `errno=N` and the blank line). Throws UapiError
 * on malformed input, or with `errno` set when the device answered with an error.
 */
export function decodeGet(reply: string): DeviceState {
  const lines = stripTerminator(reply).split('\n');
  const state: DeviceState = { peers: [] };
  let peer: PeerState | undefined;
  let errno: number | undefined;
  for (const [i, line] of lines.entries()) {
    if (errno !== undefined) throw new UapiError(`line ${i + 1}: data after errno`);
    const eq = line.indexOf('=');
    if (eq <= 0) throw new UapiError(`line ${i + 1}: expected key=value, got ${JSON.stringify(line.slice(0, 80))}`);
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    switch (key) {
      case 'errno':
        if (!/^-?\d{1,10}$/.test(value)) throw new UapiError(`errno: expected an integer, got ${JSON.stringify(value.slice(0, 40))}`);
        errno = Number(value);
        break;
      case 'private_key':
        if (peer) throw new UapiError(`line ${i + 1}: private_key after a peer`);
        state.privateKey = parseHexKey(key, value);
        break;
      case 'listen_port':
        if (peer) throw new UapiError(`line ${i + 1}: listen_port after a peer`);
        state.listenPort = parseUint(key, value, 65535);
        break;
      case 'fwmark':
        if (peer) throw new UapiError(`line ${i + 1}: fwmark after a peer`);
        state.fwmark = parseUint(key, value, 0xffffffff);
        break;
      case 'public_key':
        peer = {
          publicKey: parseHexKey(key, value),
          lastHandshakeTimeSec: 0,
          lastHandshakeTimeNsec: 0,
          rxBytes: 0,
          txBytes: 0,
          persistentKeepaliveInterval: 0,
          allowedIps: [],
        };
        state.peers.push(peer);
        break;
      default: {
        if (!peer) throw new UapiError(`line ${i + 1}: ${JSON.stringify(key.slice(0, 40))} is not a device key`);
        switch (key) {
          case 'preshared_key':
            peer.presharedKey = parseHexKey(key, value);
            break;
          case 'endpoint':
            peer.endpoint = checkEndpoint(value);
            break;
          case 'last_handshake_time_sec':
            peer.lastHandshakeTimeSec = parseUint(key, value, Number.MAX_SAFE_INTEGER);
            break;
          case 'last_handshake_time_nsec':
            peer.lastHandshakeTimeNsec = parseUint(key, value, 999_999_999);
            break;
          case 'rx_bytes':
            peer.rxBytes = parseUint(key, value, Number.MAX_SAFE_INTEGER);
            break;
          case 'tx_bytes':
            peer.txBytes = parseUint(key, value, Number.MAX_SAFE_INTEGER);
            break;
          case 'persistent_keepalive_interval':
            peer.persistentKeepaliveInterval = parseUint(key, value, 65535);
            break;
          case 'protocol_version':
            peer.protocolVersion = parseUint(key, value, 0xffffffff);
            break;
          case 'allowed_ip':
            if (!isPrefix(value)) throw new UapiError(`allowed_ip: expected a prefix, got ${JSON.stringify(value.slice(0, 60))}`);
            peer.allowedIps.push(value);
            break;
          default:
            throw new UapiError(`line ${i + 1}: unknown key ${JSON.stringify(key.slice(0, 40))}`);
        }
      }
    }
  }
  if (errno === undefined) throw new UapiError('reply has no errno line');
  if (errno !== 0) throw new UapiError(`device answered errno=${errno}`, errno);
  return state;
}

/** Encodes a device state as a `get=1` reply; the inverse of decodeGet (used to test it, and by nothing that guesses). */
export function encodeGetReply(state: DeviceState, errno = 0): string {
  const lines: string[] = [];
  if (state.privateKey !== undefined) lines.push(`private_key=${base64ToHex(state.privateKey)}`);
  if (state.listenPort !== undefined) lines.push(`listen_port=${state.listenPort}`);
  if (state.fwmark !== undefined) lines.push(`fwmark=${state.fwmark}`);
  for (const p of state.peers) {
    lines.push(`public_key=${base64ToHex(p.publicKey)}`);
    if (p.presharedKey !== undefined) lines.push(`preshared_key=${base64ToHex(p.presharedKey)}`);
    if (p.protocolVersion !== undefined) lines.push(`protocol_version=${p.protocolVersion}`);
    if (p.endpoint !== undefined) lines.push(`endpoint=${p.endpoint}`);
    lines.push(`last_handshake_time_sec=${p.lastHandshakeTimeSec}`, `last_handshake_time_nsec=${p.lastHandshakeTimeNsec}`);
    lines.push(`tx_bytes=${p.txBytes}`, `rx_bytes=${p.rxBytes}`, `persistent_keepalive_interval=${p.persistentKeepaliveInterval}`);
    for (const a of p.allowedIps) lines.push(`allowed_ip=${a}`);
  }
  lines.push(`errno=${errno}`);
  return `${lines.join('\n')}\n\n`;
}

/**
 * Finds the end of one reply in a stream buffer: the index just past the first blank line, or -1
 * when the reply is not complete yet.
 */
export function replyEnd(buffer: string): number {
  const i = buffer.indexOf('\n\n');
  return i < 0 ? -1 : i + 2;
}
