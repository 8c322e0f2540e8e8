// A PoP-side MASQUE server for the netns tests and the bench while the real auth subsystem is not on
// this branch: the same MasqueServer + IpGateway the agent runs, gated by HS256 JWTs checked with jose
// (issuer, audience, expiry, a `roles` claim). Config comes as JSON in CBR_TESTBED; prints
// `ready <port>` on stdout once it listens; SIGTERM closes everything.
import { jwtVerify, errors } from 'jose';
import { AuthError, type AuthGate, type Identity, type SessionKind } from '../../../auth/index.js';
import { generateSelfSigned, writeTlsMaterial } from '../../quic/index.js';
import { MasqueServer } from '../server.js';
import { IpGateway } from '../ip-gateway.js';
import { TargetPolicy } from '../policy.js';

interface Cfg { port: number; secret: string; tun: string; poolV4: string; poolV6: string; routes: string[]; certFile: string; keyFile: string; names: string[] }
const cfg = JSON.parse(process.env.CBR_TESTBED ?? '{}') as Cfg;
const key = new TextEncoder().encode(cfg.secret);

const gate: AuthGate = {
  async authorize(token: string, kind: SessionKind): Promise<Identity> {
    try {
      const { payload } = await jwtVerify(token, key, { issuer: 'cbr-testbed', audience: 'cbr' });
      const roles = Array.isArray(payload.roles) ? (payload.roles as string[]) : [];
      if (!roles.includes('vpn-user')) throw new AuthError('MISSING_ROLE', `${kind} needs vpn-user`);
      return { subject: String(payload.sub), roles, expiresAt: payload.exp! };
    } catch (err) {
      if (err instanceof AuthError) throw err;
      throw new AuthError(err instanceof errors.JWTExpired ? 'EXPIRED' : 'INVALID_TOKEN', (err as Error).message);
    }
  },
};

const tls = await generateSelfSigned(cfg.names);
writeTlsMaterial(tls, cfg.certFile, cfg.keyFile);
const gateway = await IpGateway.create({ tunName: cfg.tun, mtu: 1280, poolV4: cfg.poolV4, poolV6: cfg.poolV6, nat: true, allowPrivate: true });
const server = await MasqueServer.listen({
  host: '0.0.0.0', port: cfg.port, tls, serverId: 1, auth: gate, dnsTimeoutMs: 1000, maxSessions: 200_000,
  udpPolicy: new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: true }),
  ip: { gateway, routes: cfg.routes },
});
process.stdout.write(`ready ${server.address.port}\n`);
// Memory probe for the bench: `stats` on stdin answers with one JSON line.
process.stdin.on('data', (d) => {
  if (d.toString().trim() === 'stats') {
    if (global.gc) global.gc();
    process.stdout.write(JSON.stringify({ rss: process.memoryUsage().rss, heap: process.memoryUsage().heapUsed, connections: server.connectionCount, live: server.live, counters: server.counters }) + '\n');
  }
});
process.once('SIGTERM', async () => {
  await server.close();
  await gateway.close();
  process.exit(0);
});
