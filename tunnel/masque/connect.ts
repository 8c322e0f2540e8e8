// `cbr connect`: the MASQUE client. ip mode: a TUN with the assigned addresses and the advertised
// routes, packets forwarded both ways; udp mode: a local UDP port relayed to --target. Tokens come
// from --token, --token-file (re-read on every refresh) or client credentials against --issuer;
// they are refreshed in-band before expiry. Reconnects with exponential backoff, at once after a
// stateless reset (the PoP lost the connection: anycast moved us, or it restarted); SIGINT/SIGTERM
// tear everything down (session FIN, QUIC close, TUN removed) and exit 0.
import { readFileSync } from 'node:fs';
import { createSocket, type Socket } from 'node:dgram';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { decodeJwt } from 'jose';
import type { Command } from 'commander';
import { CbrError, TunDevice, splitHostPort, errorMessage, errorCode } from '../../dataplane/index.js';
import { MasqueClient, MasqueHttpError, describeClose, type MasqueSession, type SessionEnd } from './client.js';
import { rangeToPrefixes } from './ranges.js';
import { ConnectStatus, stateForEnd, stateForFailure } from './connect-status.js';

const execFileAsync = promisify(execFile);

export interface TokenSource {
  /** A token and its expiry (Unix seconds; undefined when the token does not say). */
  get(): Promise<{ token: string; expiresAt?: number }>;
}

function expiryOf(token: string): number | undefined {
  try {
    const exp = decodeJwt(token).exp;
    return typeof exp === 'number' ? exp : undefined;
  } catch {
    return undefined;
  }
}

export function staticToken(token: string): TokenSource {
  return { get: async () => ({ token, expiresAt: expiryOf(token) }) };
}

export function fileToken(path: string): TokenSource {
  return {
    async get() {
      let token: string;
      try {
        token = readFileSync(path, 'utf8').trim();
      } catch (err) {
        throw new CbrError('NOT_FOUND', `--token-file: cannot read ${path}: ${errorMessage(err)}`);
      }
      if (!token) throw new CbrError('INVALID_ARGUMENT', `--token-file: ${path} is empty`);
      return { token, expiresAt: expiryOf(token) };
    },
  };
}

/** OAuth client credentials against a Zitadel-compatible issuer (discovery → token_endpoint). */
export function clientCredentials(issuer: string, clientId: string, secretFile: string, projectId?: string): TokenSource {
  return {
    async get() {
      const secret = readFileSync(secretFile, 'utf8').trim();
      const base = issuer.replace(/\/$/, '');
      const disco = await fetch(`${base}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(10_000) });
      if (!disco.ok) throw new CbrError('UPSTREAM_FAILED', `--issuer: discovery answered ${disco.status}`);
      const endpoint = ((await disco.json()) as { token_endpoint?: string }).token_endpoint;
      if (!endpoint) throw new CbrError('UPSTREAM_FAILED', '--issuer: the discovery document has no token_endpoint');
      const scope = ['openid', 'urn:zitadel:iam:org:project:roles', ...(projectId ? [`urn:zitadel:iam:org:project:id:${projectId}:aud`] : [])].join(' ');
      const res = await fetch(endpoint, {
        method: 'POST',
        signal: AbortSignal.timeout(10_000),
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          authorization: `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
        },
        body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
      });
      if (!res.ok)
        throw new CbrError(res.status === 400 || res.status === 401 ? 'UNAUTHENTICATED' : 'UPSTREAM_FAILED', `token endpoint answered ${res.status}`);
      const body = (await res.json()) as { access_token?: string; expires_in?: number };
      if (typeof body.access_token !== 'string') throw new CbrError('UPSTREAM_FAILED', 'token endpoint answered without an access_token');
      const expiresAt = expiryOf(body.access_token) ?? (typeof body.expires_in === 'number' ? Math.floor(Date.now() / 1000) + body.expires_in : undefined);
      return { token: body.access_token, expiresAt };
    },
  };
}

export interface ConnectOptions {
  server: string;
  serverName?: string;
  tokens: TokenSource;
  mode: 'ip' | 'udp';
  caPem?: string;
  insecure?: boolean;
  /** udp mode */
  listen?: string;
  target?: string;
  /** ip mode */
  tun?: string;
  log: (line: string) => void;
  /** What the client is doing, for the person running it (connect-status.ts). */
  status?: ConnectStatus;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/** Runs the client until `signal` aborts. */
export async function runConnect(o: ConnectOptions, signal: AbortSignal): Promise<void> {
  const server = splitHostPort(o.server);
  if (!server) throw new CbrError('INVALID_ARGUMENT', `--server: expected HOST:PORT, got ${JSON.stringify(o.server)}`);
  let local: Socket | undefined;
  let localPeer: { port: number; address: string } | undefined;
  let tun: TunDevice | undefined;
  let current: MasqueSession | undefined;
  let applied: string[] = [];
  if (o.mode === 'udp') {
    const target = o.target ? splitHostPort(o.target) : undefined;
    if (!target) throw new CbrError('INVALID_ARGUMENT', `--target: expected HOST:PORT for udp mode, got ${JSON.stringify(o.target)}`);
    const l = splitHostPort(o.listen ?? '127.0.0.1:0');
    if (!l) throw new CbrError('INVALID_ARGUMENT', `--listen: expected HOST:PORT, got ${JSON.stringify(o.listen)}`);
    local = createSocket(l.host.includes(':') ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      local!.once('error', reject);
      local!.bind(l.port, l.host, () => resolve());
    });
    local.on('message', (msg, r) => {
      localPeer = { port: r.port, address: r.address };
      if (o.status) o.status.bytesUp += msg.length;
      current?.send(msg);
    });
    o.log(`listening on ${local.address().address}:${local.address().port} for ${o.target}`);
  } else {
    tun = TunDevice.open({ name: o.tun ?? 'cbrc%d', mtu: 1280 });
    await tun.configure({});
    tun.onPackets((pkts) => {
      for (const p of pkts) {
        if (o.status) o.status.bytesUp += p.length;
        current?.send(p);
      }
    });
  }
  const ip = async (...args: string[]) => execFileAsync('ip', args, { timeout: 10_000 });
  let backoff = 500;
  let lastImmediate = 0;
  /** The last TLS session the PoPs gave us: reconnects resume it (at any PoP sharing the fleet key). */
  let tlsSession: Uint8Array | undefined;
  try {
    while (!signal.aborted) {
      const started = Date.now();
      /** Why to reconnect without waiting: a stateless reset (the PoP has no such connection: anycast moved us) or a GOAWAY (it drains). */
      let immediate: string | undefined;
      let client: MasqueClient | undefined;
      let refreshTimer: NodeJS.Timeout | undefined;
      o.status?.set('connecting');
      try {
        const { token, expiresAt } = await o.tokens.get();
        client = await MasqueClient.connect({
          host: server.host,
          port: server.port,
          serverName: o.serverName,
          caPem: o.caPem,
          insecure: o.insecure,
          session: tlsSession,
        });
        if (tlsSession) o.log(client.h3.quic.isResumed ? 'TLS session resumed' : 'TLS session not resumed: full handshake');
        const session = o.mode === 'udp' ? await client.openUdp(splitHostPort(o.target!)!, token) : await client.openIp(token);
        current = session;
        if (o.mode === 'udp') {
          session.onPayload = (p) => {
            if (o.status) o.status.bytesDown += p.length;
            if (localPeer) local!.send(p, localPeer.port, localPeer.address);
          };
          o.log(`session open: connect-udp to ${o.target}`);
          o.status?.connected({ headers: session.responseHeaders, addresses: [], expiresAt });
        } else {
          session.onPayload = (p) => {
            if (o.status) o.status.bytesDown += p.length;
            void tun!.write(p);
          };
          const apply = async () => {
            const addrs = session.addresses.map((a) => `${a.address}/${a.prefixLength}`);
            const routes = session.routes.flatMap(rangeToPrefixes);
            const want = [...addrs.map((a) => `addr ${a}`), ...routes.map((r) => `route ${r}`)];
            if (want.join() === applied.join()) return;
            await ip('addr', 'flush', 'dev', tun!.name);
            // Keep the way to the PoP itself out of the tunnel when a default route is advertised.
            const via = /via (\S+) dev (\S+)/.exec((await ip('route', 'get', server.host)).stdout);
            for (const a of addrs) await ip('addr', 'add', a, 'dev', tun!.name, ...(a.includes(':') ? ['nodad'] : []));
            if (via) await ip('route', 'replace', `${server.host}/${server.host.includes(':') ? 128 : 32}`, 'via', via[1]!, 'dev', via[2]!);
            for (const r of routes) await ip('route', 'replace', r, 'dev', tun!.name);
            applied = want;
            o.log(`session open: connect-ip addresses ${addrs.join(' ')} routes ${routes.join(' ')} on ${tun!.name}`);
            o.status?.connected({ headers: session.responseHeaders, addresses: addrs, expiresAt });
          };
          await apply();
          session.onIpConfig = () => void apply().catch((e) => o.log(`cannot apply the ip config: ${errorMessage(e)}`));
        }
        // In-band refresh before expiry: at 80% of the remaining lifetime, at least 1 s ahead.
        const schedule = (exp: number | undefined) => {
          if (exp === undefined) return;
          const left = exp * 1000 - Date.now();
          refreshTimer = setTimeout(
            async () => {
              try {
                const next = await o.tokens.get();
                if (next.expiresAt !== undefined && next.expiresAt <= exp) {
                  o.log('the token source has no fresher token; the session ends when this one expires');
                  return;
                }
                o.status?.set('refreshing the token');
                const a = await client!.refreshToken(next.token);
                if (a.status !== 204) throw new MasqueHttpError(a.status, a.body.toString());
                o.log('token refreshed');
                if (o.status) o.status.expiresAt = next.expiresAt;
                o.status?.set('connected');
                schedule(next.expiresAt);
              } catch (err) {
                o.log(`token refresh failed: ${errorMessage(err)}`);
                o.status?.set('connected', 'token refresh failed');
                schedule(Math.floor(Date.now() / 1000) + 2);
              }
            },
            Math.max(Math.min(left * 0.8, left - 1000), 200),
          );
        };
        schedule(expiresAt);
        const end = await new Promise<SessionEnd | 'stop' | 'goaway'>((resolve) => {
          session.onEnd = resolve;
          // A draining PoP: move now, while its route is being withdrawn, not when it finally closes.
          if (client) client.onGoaway = () => resolve('goaway');
          if (client?.goaway) resolve('goaway');
          signal.addEventListener('abort', () => resolve('stop'), { once: true });
        });
        if (end === 'stop') break;
        if (end === 'goaway') {
          o.log('the PoP is draining (GOAWAY)');
          o.status?.set('reconnecting', 'the PoP is draining');
          immediate = 'the PoP is draining';
        }
        if (end !== 'goaway') {
          o.log(`session ended: ${end.by === 'connection' ? describeClose(end.reason) : end.by}`);
          if (end.by === 'connection' && end.reason.by === 'stateless-reset') immediate = 'a stateless reset';
          o.status?.set(stateForEnd(end));
        }
      } catch (err) {
        o.log(`connect failed: ${errorMessage(err)}`);
        o.status?.set(stateForFailure(err), errorMessage(err));
        if (errorCode(err) === 'TLS_CERTIFICATE_REJECTED') throw err; // permanent: retrying cannot help
      } finally {
        clearTimeout(refreshTimer);
        current = undefined;
        tlsSession = client?.tlsSession() ?? tlsSession;
        await client?.close().catch(() => {});
      }
      if (signal.aborted) break;
      if (Date.now() - started > 10_000) backoff = 500;
      // One immediate attempt per 10 s: a PoP that resets every new connection still meets the backoff.
      if (immediate && Date.now() - lastImmediate > 10_000) {
        lastImmediate = Date.now();
        o.log(`reconnecting at once after ${immediate}`);
        continue;
      }
      o.log(`reconnecting in ${backoff} ms`);
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 30_000);
    }
  } finally {
    local?.close();
    await tun?.close();
  }
}

export function registerConnectCommand(program: Command): void {
  program
    .command('connect')
    .description('open a MASQUE tunnel (connect-ip or connect-udp over HTTP/3) to a PoP')
    .requiredOption('--server <host:port>', "the PoP's MASQUE listener")
    .option('--server-name <name>', 'TLS server name (default: the server host)')
    .option('--token <jwt>', 'bearer token')
    .option('--token-file <file>', 'file holding the bearer token (re-read on every refresh)')
    .option('--issuer <url>', 'get tokens with client credentials from this issuer')
    .option('--client-id <id>', 'client ID for --issuer')
    .option('--client-secret-file <file>', 'file holding the client secret for --issuer')
    .option('--project-id <id>', 'Zitadel project ID to ask for in the token audience (--issuer)')
    .option('--mode <mode>', 'ip (TUN) or udp (local port relayed to --target)', 'ip')
    .option('--target <host:port>', 'udp mode: where the relayed datagrams go')
    .option('--listen <host:port>', 'udp mode: local UDP address', '127.0.0.1:0')
    .option('--tun <name>', 'ip mode: TUN interface name', 'cbrc%d')
    .option('--ca <file>', 'PEM CA bundle to verify the server against')
    .option('--insecure', 'do not verify the server certificate (tests only)')
    .action(async (opts: Record<string, string | boolean | undefined>) => {
      const given = [opts.token, opts.tokenFile, opts.issuer].filter((v) => v !== undefined).length;
      if (given !== 1) throw new CbrError('INVALID_ARGUMENT', 'give exactly one of --token, --token-file, --issuer');
      if (opts.mode !== 'ip' && opts.mode !== 'udp') throw new CbrError('INVALID_ARGUMENT', `--mode: expected ip or udp, got ${JSON.stringify(opts.mode)}`);
      let tokens: TokenSource;
      if (typeof opts.token === 'string') tokens = staticToken(opts.token);
      else if (typeof opts.tokenFile === 'string') tokens = fileToken(opts.tokenFile);
      else {
        if (typeof opts.clientId !== 'string' || typeof opts.clientSecretFile !== 'string')
          throw new CbrError('INVALID_ARGUMENT', '--issuer needs --client-id and --client-secret-file');
        tokens = clientCredentials(opts.issuer as string, opts.clientId, opts.clientSecretFile, opts.projectId as string | undefined);
      }
      let caPem: string | undefined;
      if (typeof opts.ca === 'string') {
        try {
          caPem = readFileSync(opts.ca, 'utf8');
        } catch (err) {
          throw new CbrError('NOT_FOUND', `--ca: cannot read ${opts.ca}: ${errorMessage(err)}`);
        }
      }
      const ac = new AbortController();
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => ac.abort());
      const status = new ConnectStatus(process.stdout, process.stderr);
      await runConnect(
        {
          server: opts.server as string,
          serverName: opts.serverName as string | undefined,
          tokens,
          mode: opts.mode,
          caPem,
          insecure: opts.insecure === true,
          listen: opts.listen as string,
          target: opts.target as string | undefined,
          tun: opts.tun as string,
          log: (line) => status.log(`cbr connect: ${line}`),
          status,
        },
        ac.signal,
      ).finally(() => status.close());
      process.exitCode = 0;
    });
}
