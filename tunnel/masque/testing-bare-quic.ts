// The bare QUIC server of bench/masque's quic_handshakes_per_s_bare, run in the PoP namespace: the
// MASQUE listener's QUIC endpoint (same certificate, retry, transport limits) with no HTTP/3, auth
// or CONNECT behind it. Config JSON in CBR_BARE_QUIC; prints "listening" and runs until stdin ends.
import { QuicEndpoint, loadTlsMaterial } from '../quic/index.js';
import { MASQUE_TRANSPORT } from './server.js';

interface Cfg {
  host: string;
  port: number;
  certFile: string;
  keyFile: string;
}
const cfg = JSON.parse(process.env.CBR_BARE_QUIC ?? '{}') as Cfg;
const endpoint = await QuicEndpoint.listen({
  host: cfg.host,
  port: cfg.port,
  tls: loadTlsMaterial(cfg.certFile, cfg.keyFile),
  serverId: 0,
  // The load generator is one source: lift the per-source caps as LOAD_LIMITS does for the agent.
  maxConnectionsPerSource: 1_000_000,
  maxHandshakesPerSource: 1_000_000,
  maxConnections: 1_000_000,
  ...MASQUE_TRANSPORT,
  onConnection: () => {},
});
process.stdout.write('listening\n');
process.stdin.resume();
await new Promise((r) => process.stdin.once('end', r));
await endpoint.close();
process.exit(0);
